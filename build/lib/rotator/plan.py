"""Split the primary-key space into shards of (nearly) equal row counts.

Boundaries are found by walking the key index once: each boundary is the
key ``step`` rows after the previous one (an index-only OFFSET from the
previous boundary), so sparse or skewed keys still give even shards and the
whole plan costs one pass over the index, never the table in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .target import Target


@dataclass(frozen=True)
class ShardPlan:
    index: int
    lower: Any  # exclusive; None for the first shard
    upper: Any  # inclusive
    rows: int


@dataclass(frozen=True)
class Plan:
    high_water: Any
    total_rows: int
    shards: list[ShardPlan]


def make_plan(target: Target, shards: int) -> Plan:
    qs = target.queryset()
    # Not Max("pk"): PostgreSQL has no max() for uuid; this is one backward index step.
    high_water = qs.order_by("-pk").values_list("pk", flat=True).first()
    if high_water is None:
        return Plan(None, 0, [])
    total = qs.filter(pk__lte=high_water).count()
    count = max(1, min(shards, total))
    keys = qs.filter(pk__lte=high_water).order_by("pk").values_list("pk", flat=True)
    plans: list[ShardPlan] = []
    lower: Any = None
    done = 0
    for index in range(count):
        rows = (total * (index + 1)) // count - done
        if index == count - 1:
            upper = high_water
        else:
            window = keys if lower is None else keys.filter(pk__gt=lower)
            upper = window[rows - 1]
        plans.append(ShardPlan(index, lower, upper, rows))
        lower = upper
        done += rows
    return Plan(high_water, total, plans)
