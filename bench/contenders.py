"""The contenders: what runs, under which name, on all rows or on a sample."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from .bootstrap import BenchError

PER_ROW_SAMPLE = 20_000
#: The literal design runs on this many rows first; in full only if that projects
#: to at most BUDGET seconds for all rows.
PILOT = 100_000
BUDGET = 600.0


@dataclass(frozen=True)
class Contender:
    name: str
    label: str
    workload: str
    params: dict[str, Any] = field(default_factory=dict)
    #: Always run on the first ``sample`` rows and extrapolate.
    sample: int | None = None
    #: Run on the first ``pilot`` rows; repeat on all rows if that projects under BUDGET.
    pilot: int | None = None


SEED = Contender("seed", "seed_tickets: COPY of N rows (tickets.seeding)", "seed")

CONTENDERS = [
    Contender("floor", "floor: one UPDATE ... SET token = gen_random_uuid()", "floor"),
    Contender(
        "floor-halves",
        "the floor cut in two UPDATEs over the key's halves, at once (PostgreSQL)",
        "floor-split",
        {"parts": 2},
    ),
    Contender(
        "textbook", "textbook: iterator(chunk_size=10000) + bulk_update per 10,000", "textbook"
    ),
    Contender("per-row", 'per-row save(update_fields=["token"])', "per-row", sample=PER_ROW_SAMPLE),
    Contender(
        "async-literal",
        "design card literally: 8 coroutines, aiterator() + abulk_update() per 10,000",
        "async-literal",
        pilot=PILOT,
    ),
    *(
        Contender(f"rotator-w{n}", f"rotator --workers {n}", "rotator", {"workers": n})
        for n in (1, 2, 4, 8)
    ),
    Contender(
        "rotator-w4-db",
        "rotator --workers 4 --generator database",
        "rotator",
        {"workers": 4, "generator": "database"},
    ),
    Contender(
        "rotator-w4-bar",
        "rotator --workers 4, tqdm bar on a (fake) terminal",
        "rotator",
        {"workers": 4, "tty": True},
    ),
    Contender(
        "rotator-w4-quiet",
        "rotator --workers 4 -v 0 (no progress at all)",
        "rotator",
        {"workers": 4, "verbosity": 0},
    ),
]

MEMORY = Contender("rotator-w4", "rotator --workers 4", "rotator", {"workers": 4})


def for_vendor(contenders: list[Contender]) -> list[Contender]:
    """The contenders this database can run, the floor labelled with its own SQL."""
    from .vendors import floor_label, vendor

    if vendor() == "postgresql":
        return contenders
    contenders = [c for c in contenders if c.workload != "floor-split"]
    if vendor() == "sqlite":  # no server-side generator there
        contenders = [c for c in contenders if c.params.get("generator") != "database"]
    # bulk_update's CASE WHEN grows with the square of the batch here too: a pilot
    # first, as for the literal design, so that 1M rows cannot take half an hour.
    return [
        Contender(c.name, floor_label(), c.workload)
        if c.name == "floor"
        else Contender(c.name, c.label, c.workload, c.params, pilot=PILOT)
        if c.name == "textbook"
        else c
        for c in contenders
    ]


def select(only: str | None) -> list[Contender]:
    """The contenders named by ``--only`` (names or shell patterns), in table order."""
    if not only:
        return list(CONTENDERS)
    patterns = [p.strip() for p in only.split(",") if p.strip()]
    names = [c.name for c in CONTENDERS]
    for pattern in patterns:
        if not fnmatch.filter(names, pattern):
            raise BenchError(
                f"--only {pattern!r} matches no contender; choose from {', '.join(names)}"
            )
    return [c for c in CONTENDERS if any(fnmatch.fnmatch(c.name, p) for p in patterns)]
