"""Shard plans: every row in exactly one shard, shards within one row of each other.

A shard covers the keys in (lower, upper]: lower is exclusive (None for the
first shard), upper inclusive and the last shard ends at the high-water mark.
"""

from __future__ import annotations

import threading

import django
import pytest
from django.db import connection

from rotator.sql import builder_for
from rotator.store.planning import Plan, ShardPlan, make_plan
from tests.conftest import fill
from tests.support import add_tickets, token_target
from tickets.models import Ticket

pytestmark = pytest.mark.django_db


def plan_for(shards: int) -> Plan:
    """The plan, with its keys (kept as the database's text) read back as integers."""
    plan = make_plan(token_target(), builder_for(connection), shards)

    def key(text: str | None) -> int | None:
        return None if text is None else int(text)

    return Plan(
        key(plan.high_water),
        plan.total_rows,
        [ShardPlan(s.index, key(s.lower), key(s.upper), s.rows) for s in plan.shards],
        plan.estimated,
    )


def shard_of_each_row(plan: Plan) -> dict[int, list[int]]:
    """Which shards claim each row, from the boundaries alone: (lower, upper]."""
    claims: dict[int, list[int]] = {}
    for pk in Ticket.objects.values_list("pk", flat=True):
        for shard in plan.shards:
            if (shard.lower is None or pk > shard.lower) and pk <= shard.upper:
                claims.setdefault(pk, []).append(shard.index)
    return claims


def assert_even_cover(plan: Plan, shards: int) -> None:
    keys = sorted(Ticket.objects.values_list("pk", flat=True))
    assert plan.high_water == keys[-1]
    assert plan.total_rows == len(keys)
    assert len(plan.shards) == min(shards, len(keys))
    assert [s.index for s in plan.shards] == list(range(len(plan.shards)))

    claims = shard_of_each_row(plan)
    assert sorted(claims) == keys
    assert all(len(owners) == 1 for owners in claims.values())

    assert plan.shards[0].lower is None
    assert plan.shards[-1].upper == plan.high_water
    for before, after in zip(plan.shards, plan.shards[1:], strict=False):
        assert after.lower == before.upper
    for shard in plan.shards:
        # Boundaries are real keys, and each belongs to the shard it ends.
        assert shard.upper in keys
        assert claims[shard.upper] == [shard.index]
        assert shard.rows == sum(1 for owners in claims.values() if owners == [shard.index])

    counts = [s.rows for s in plan.shards]
    assert sum(counts) == len(keys)
    assert max(counts) - min(counts) <= 1


@pytest.mark.parametrize("shards", [1, 2, 3, 7, 16])
def test_dense_keys_split_evenly(shards):
    fill(1_000)
    assert_even_cover(plan_for(shards), shards)


@pytest.mark.parametrize("shards", [2, 3, 4, 9])
def test_sparse_keys_split_by_rows_not_by_key_range(shards):
    add_tickets(*range(1, 101), *range(1_000_000, 1_000_101))
    plan = plan_for(shards)
    assert_even_cover(plan, shards)
    if shards == 2:
        assert [(s.lower, s.upper, s.rows) for s in plan.shards] == [
            (None, 100, 100),
            (100, 1_000_100, 101),
        ]


@pytest.mark.parametrize("shards", [2, 5, 8])
def test_skewed_keys_split_by_rows_not_by_key_range(shards):
    # Most rows crowd the low keys, a few sit far apart at the top.
    add_tickets(*range(1, 501), *(10**k for k in range(4, 13)))
    assert_even_cover(plan_for(shards), shards)


def test_fewer_rows_than_shards_gives_one_shard_per_row():
    add_tickets(3, 40, 500)
    plan = plan_for(8)
    assert_even_cover(plan, 8)
    assert [(s.lower, s.upper, s.rows) for s in plan.shards] == [
        (None, 3, 1),
        (3, 40, 1),
        (40, 500, 1),
    ]


def test_one_row_one_shard():
    add_tickets(42)
    plan = plan_for(4)
    assert [(s.lower, s.upper, s.rows) for s in plan.shards] == [(None, 42, 1)]


def test_empty_table_has_no_shards():
    assert plan_for(4) == Plan(high_water=None, total_rows=0, shards=[])


@pytest.mark.django_db(transaction=True)
def test_two_planners_at_once_plan_one_run_and_the_second_joins_it(monkeypatch):
    from rotator.models import Run
    from rotator.store import lifecycle

    if connection.vendor == "sqlite" and django.VERSION < (5, 1):
        pytest.skip("two SQLite writers need BEGIN IMMEDIATE (Django 5.1+ transaction_mode)")
    fill(2_000)
    plans: list[Plan] = []

    def counted(*args: object) -> Plan:
        plans.append(make_plan(*args))
        return plans[-1]

    monkeypatch.setattr(lifecycle, "make_plan", counted)
    results: list[tuple[int, bool]] = []
    start = threading.Barrier(2)

    def plan() -> None:
        try:
            start.wait()
            run, created = lifecycle.plan(token_target(), builder_for(connection), 4, {})
            results.append((run.pk, created))
        finally:
            connection.close()

    threads = [threading.Thread(target=plan) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(created for _, created in results) == [False, True]
    assert len({pk for pk, _ in results}) == 1
    assert len(plans) == 1  # the second waited for the first's plan instead of planning
    assert Run.objects.count() == 1


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_large_table_is_planned_from_a_sample_not_a_pass(monkeypatch):
    import rotator.sql.postgresql as pg

    fill(20_000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tickets_ticket")
    # Pretend 20,000 rows are "large": the plan must come from the statistics and
    # a block sample (an estimate), and still cover every key.
    monkeypatch.setattr(pg, "EXACT_PLAN_ROWS", 10_000)
    monkeypatch.setattr(pg, "SAMPLE_ROWS", 2_000)
    plan = plan_for(8)
    assert plan.estimated
    assert 15_000 <= plan.total_rows <= 25_000
    keys = sorted(Ticket.objects.values_list("pk", flat=True))
    assert plan.high_water == keys[-1]
    assert plan.shards[0].lower is None and plan.shards[-1].upper == keys[-1]
    uppers = [s.upper for s in plan.shards]
    assert uppers == sorted(uppers) and len(set(uppers)) == len(uppers)
    assert len(plan.shards) >= 4  # a sample of ~2,000 rows still cuts several shards
