"""--leaked on PostgreSQL: no dump value reaches the server log or the output, even
for a line the column cannot hold (text COPY's error context would quote it).

The embedded server's log, with every statement of the test database logged
(``server_log`` from test_server_log.py).
"""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.test_server_log import server_log  # noqa: F401 (the fixture)
from tests.testapp.models import ApiKey

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgresql]


def _leaked(path: Path) -> str:
    """The output and the error of --leaked PATH on testapp.ApiKey.key, as one text."""
    out = StringIO()
    try:
        call_command("rotate_field", "testapp.ApiKey.key", "--leaked", str(path), stdout=out)
    except Exception as exc:  # noqa: BLE001 (whatever it is, its text is searched)
        return out.getvalue() + f"{type(exc).__name__}: {exc}"
    return out.getvalue()


@pytest.fixture
def keys() -> list[str]:
    """Live keys, made before the log is on (their INSERT would show them)."""
    ApiKey.objects.bulk_create(ApiKey() for _ in range(50))
    return list(ApiKey.objects.values_list("key", flat=True))


def test_no_dump_value_reaches_the_server_log_even_past_the_column_length(
    keys,
    server_log,  # noqa: F811
    tmp_path,
):
    # Live values, then one too long for varchar(64): the dump of another column.
    too_long = "leaked-" + "z" * 80
    path = tmp_path / "dump.txt"
    path.write_text("".join(f"{k}\n" for k in keys[:20]))
    shown = _leaked(path)
    assert shown.startswith("20 of the 20 leaked values"), shown
    path.write_text(f"{keys[20]}\n{too_long}\n{keys[21]}\n")
    refused = _leaked(path)
    assert refused == (
        f"CommandError: line 2 of {str(path)!r} is longer than testapp.ApiKey.key holds "
        "(64 characters); fix or remove that line"
    ), refused

    log = server_log()
    assert "rotator_leaked" in log, "the --leaked statements were not logged"
    values = [*keys[:22], too_long]
    # Counts only: a failing test must not print the values either.
    logged = sum(1 for v in values if v.lower() in log)
    assert logged == 0, f"{logged} dump values are in the server log"
    printed = sum(1 for v in values if v in shown + refused)
    assert printed == 0, f"{printed} dump values were printed"
