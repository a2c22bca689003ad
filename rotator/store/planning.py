"""Split the primary-key space into shards of (nearly) equal row counts.

The builder finds the boundaries: on PostgreSQL from the statistics and a
block sample of a large table (no work proportional to the table), exactly
on a small one; elsewhere by walking the key index. Workers claim shards
dynamically, so boundaries need not be exact. Keys are kept as the
database's own values, as text.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connections

from rotator.sql import Builder
from rotator.target import Target


@dataclass(frozen=True)
class ShardPlan:
    index: int
    lower: str | None  # exclusive; None for the first shard
    upper: str  # inclusive
    rows: int


@dataclass(frozen=True)
class Plan:
    high_water: str | None
    total_rows: int
    shards: list[ShardPlan]
    estimated: bool = False


def make_plan(target: Target, builder: Builder, shards: int) -> Plan:
    split = builder.split(connections[target.alias], target, shards)
    plans = [
        ShardPlan(index, lower, upper, rows)
        for index, (lower, upper, rows) in enumerate(
            zip([None, *split.uppers], split.uppers, split.sizes, strict=False)
        )
    ]
    return Plan(split.high_water, split.total, plans, split.estimated)
