"""A generator with too few values for a unique column is refused before anything changes.

The generators below are passed as ``--generator tests.test_value_space.<name>``.
"""

from __future__ import annotations

import math
import random
import secrets

import pytest
from django.core.management import CommandError

from rotator.models import Run
from rotator.value_space import estimated_space, judge, sample_size
from tests.conftest import run
from tests.testapp.models import ApiKey

pytestmark = pytest.mark.django_db(transaction=True)

CALLS = {"n": 0}


def constant() -> str:
    CALLS["n"] += 1
    return "the-same-key"


def heads_or_tails() -> str:
    CALLS["n"] += 1
    return random.choice(("heads", "tails"))


def seven_digits() -> str:
    CALLS["n"] += 1
    return f"{secrets.randbelow(10**7):07d}"


def _keys(count: int) -> dict[str, str]:
    ApiKey.objects.bulk_create(ApiKey() for _ in range(count))
    return {str(pk): key for pk, key in ApiKey.objects.values_list("pk", "key")}


def _table() -> dict[str, str]:
    return {str(pk): key for pk, key in ApiKey.objects.values_list("pk", "key")}


@pytest.mark.parametrize(
    ("name", "distinct"), [("constant", "only 1 distinct one"), ("heads_or_tails", "only 2 ")]
)
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_generator_with_too_few_values_is_refused_up_front(name, distinct, dry_run):
    before = _keys(300)
    spec = f"{__name__}.{name}"
    CALLS["n"] = 0
    with pytest.raises(CommandError) as refused:
        run(
            "rotate_field",
            "testapp.ApiKey.key",
            "--generator",
            spec,
            *(["--dry-run"] if dry_run else []),
        )
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(
        f"generator {spec!r} cannot fill the unique column 'testapp.ApiKey.key': "
        f"{sample_size(300):,} values it made hold {distinct}"
    ), message
    assert "fewer than the 300 rows of the table" in message
    assert message.endswith("use a generator with a larger value space; nothing was changed")
    assert refused.value.returncode == 1
    assert CALLS["n"] == sample_size(300)  # the sample only: no batch ran
    assert not Run.objects.exists()
    assert _table() == before


def test_a_seven_digit_code_fills_a_thousand_rows():
    before = _keys(1000)
    CALLS["n"] = 0
    out, _ = run("rotate_field", "testapp.ApiKey.key", "--generator", f"{__name__}.seven_digits")
    after = _table()
    assert after.keys() == before.keys()
    assert all(after[pk] != before[pk] for pk in before)
    assert len(set(after.values())) == 1000
    assert all(len(v) == 7 and v.isdigit() for v in after.values())
    assert Run.objects.get().state == Run.State.FINISHED


def test_a_non_unique_column_is_not_checked():
    ApiKey.objects.bulk_create(ApiKey(label="x") for _ in range(50))
    run("rotate_field", "testapp.ApiKey.label", "--generator", f"{__name__}.constant", "-v", "0")
    assert set(ApiKey.objects.values_list("label", flat=True)) == {"the-same-key"}


def test_the_estimate_follows_the_birthday_problem():
    assert estimated_space(64, 64) == math.inf
    assert estimated_space(64, 1) == 1
    assert estimated_space(64, 2) == pytest.approx(2, abs=0.01)
    # 40 draws showing 29 distinct values: about 59 to draw from.
    assert estimated_space(40, 29) == pytest.approx(58.7, abs=0.1)
    assert sample_size(40) == 40  # never more than the rows: no extra calls
    assert sample_size(10**6) == 6000
    assert sample_size(10**9) == 60_000


def test_the_sample_rarely_misjudges_a_value_space_near_the_table():
    rng = random.Random(7)
    rows, k = 10_000, sample_size(10_000)

    def refused(space: int) -> int:
        return sum(
            judge([rng.randrange(space) for _ in range(k)], rows).too_small for _ in range(200)
        )

    assert refused(rows // 2) >= 195  # half the rows: refused nearly always
    assert refused(rows * 3) <= 2  # three times the rows: accepted nearly always
    assert refused(10**7) == 0
