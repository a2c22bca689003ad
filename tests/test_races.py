"""Workers racing for one new value put no value in the PostgreSQL server log.

The "is it taken?" probe cannot see another worker's uncommitted batch: two
workers drawing one value would meet in the unique index, and the violation's
``DETAIL: Key (code)=(...) already exists`` would log a live value. Batches
reserve their values by keyed hash first (rotator_reservation), so the second
waits for the first and then sees the value taken. Here 4 workers draw 7-digit
codes from a space only ten times the table, so they race for values all the
time, and every statement of the test database is logged.
"""

from __future__ import annotations

import random
import re

import pytest
from django.db import connection

from tests.conftest import run
from tests.fieldapp.models import ShortCode
from tests.test_server_log import server_log  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgresql]

ROWS = 20_000
SPACE = 200_000  # 7-digit codes 1000000..1199999
GENERATOR = "tests.test_races.dense_code"


def dense_code() -> str:
    return str(1_000_000 + random.randrange(SPACE))


def test_four_workers_racing_for_dense_codes_log_no_value(server_log):  # noqa: F811
    # Made on the server: no code in the logged SQL (nor a number that could be one: a
    # literal 1000000 here was once counted as the new code 1000000).
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO fieldapp_shortcode (code) SELECT (500000 * 2 + x)::text "
            "FROM generate_series(0, %s - 1) AS x ORDER BY random() LIMIT %s",
            [SPACE, ROWS],
        )
    before = dict(ShortCode.objects.values_list("pk", "code"))
    out, err = run(
        "rotate_field",
        "fieldapp.ShortCode.code",
        "--workers=4",
        "--batch-size=1000",
        f"--generator={GENERATOR}",
        "--verbosity=2",
    )
    assert re.search(r"^Rotated 20,000 rows of fieldapp\.ShortCode\.code .*finished\.$", out, re.M)
    after = dict(ShortCode.objects.values_list("pk", "code"))
    assert after.keys() == before.keys()
    assert all(after[pk] != before[pk] for pk in before)
    # The race happened: values were found taken (by the table or a worker's batch).
    assert "new values were already taken" in err

    log = server_log()
    assert "duration:" in log and "fieldapp_shortcode" in log, "statements were not logged"
    violations = log.count("already exists")  # a count: the line would show a value
    assert violations == 0, f"{violations} unique violations were logged"
    # Numbers standing alone (not inside a longer one, a pid or an oid, say).
    logged = set(re.findall(r"(?<![0-9])1[01][0-9]{5}(?![0-9])", log))
    new = len(logged & set(after.values()))
    assert new == 0, f"{new:,} of {ROWS:,} new codes are in the server log"
