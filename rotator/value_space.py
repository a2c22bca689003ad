"""Whether a generator can give every row of a unique column a value of its own.

A generator with a value space smaller than the table (a constant, a coin flip,
a 3-digit code for a million rows) cannot fill a unique column: a run would
retry taken values until it gives up, after minutes. So before anything is
planned, a sample of ``k`` values is drawn and its distinct values counted:
``d`` distinct values among ``k`` draws from ``N`` equally likely ones are
expected to be ``N * (1 - exp(-k / N))`` (the birthday problem), which is
solved for ``N``. A sample without a repeat says nothing (``N`` is unbounded);
one whose estimate is below the table's rows is refused, naming the generator.

``k`` grows with the rows (``6 * sqrt(rows)``): a value space as large as the
table then shows about 18 repeats in the sample, half as large about 36, twice
as large about 9, so the decision is rarely wrong either way (a generator
refused by chance has a value space within a few times the table, where a run
would spend most of its time on collisions anyway). The sample is never larger
than the table, and its values are the first ones stored (``Generator.put_back``):
a generator is called as often as without the check.

Only a unique column is checked, and only a generator called in Python (uuid4
in bulk and ``--generator database`` are uuid4 by construction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: The sample is this many times the square root of the rows ...
SAMPLE_FACTOR = 6
#: ... at least this many values (when the table has them) ...
MIN_SAMPLE = 64
#: ... and at most this many (the values are kept until the run stores them).
MAX_SAMPLE = 60_000


def sample_size(rows: int) -> int:
    """How many values to draw to judge a generator for a table of ``rows`` rows."""
    wanted = max(MIN_SAMPLE, math.ceil(SAMPLE_FACTOR * math.sqrt(max(rows, 0))))
    return max(0, min(rows, wanted, MAX_SAMPLE))


def estimated_space(draws: int, distinct: int) -> float:
    """The ``N`` whose ``draws`` uniform draws are expected to show ``distinct`` values
    (``inf`` when every draw was distinct: nothing to go by)."""
    if distinct >= draws:
        return math.inf
    if distinct <= 1:
        return float(distinct)

    def expected(n: float) -> float:
        return n * -math.expm1(-draws / n)

    # expected() grows with n, from below `distinct` at n = distinct to `draws` at infinity.
    lo, hi = float(distinct), float(distinct)
    while expected(hi) < distinct:
        lo, hi = hi, hi * 2
    for _ in range(100):
        mid = (lo + hi) / 2
        if expected(mid) < distinct:
            lo = mid
        else:
            hi = mid
    return hi


def _key(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)  # a list or dict value: equal ones have equal reprs
    return value


@dataclass(frozen=True)
class SpaceCheck:
    draws: int
    distinct: int
    space: float
    rows: int

    @property
    def too_small(self) -> bool:
        return self.space < self.rows

    def reason(self, generator: str, label: str) -> str:
        return (
            f"generator {generator!r} cannot fill the unique column {label!r}: {self.draws:,} "
            f"values it made hold only {self.distinct:,} distinct ones (about "
            f"{self.space:,.0f} possible values), fewer than the {self.rows:,} rows of the "
            "table; use a generator with a larger value space"
        )


def judge(values: list[Any], rows: int) -> SpaceCheck:
    """What a sample of a generator's values says about its value space."""
    distinct = len({_key(v) for v in values})
    return SpaceCheck(len(values), distinct, estimated_space(len(values), distinct), rows)
