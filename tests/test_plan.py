"""Shard plans: every row in exactly one shard, shards within one row of each other.

A shard covers the keys in (lower, upper]: lower is exclusive (None for the
first shard), upper inclusive and the last shard ends at the high-water mark.
"""

from __future__ import annotations

import pytest
from django.db import connection

from rotator.plan import Plan, ShardPlan, make_plan
from rotator.sql import builder_for
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
