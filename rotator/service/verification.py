"""--verify: compare the table with the fingerprints of its last run, not with the checkpoints.

A row "still holds a pre-rotation value" when the keyed hash of its value is one
of the run's fingerprints (the value it had, or any other planned row's value).
Every count is one query on the server; nothing but counts (and, at -v 2,
primary keys) comes back, never a value. Each statement is a step of the
check's progress (``CheckEvents``), and a ``CheckStopper`` stops the check
by cancelling the statement running on the server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, connections, transaction

from rotator.errors import RotatorError
from rotator.models import Run
from rotator.service.checking import CheckEvents, CheckStopper, NoCheckEvents
from rotator.service.fingerprints import (
    analyze_proof,
    has_fingerprints,
    proof_for,
    proof_run_id,
    readable,
)
from rotator.sql import builder_for
from rotator.store.lifecycle import runs_for
from rotator.target import Target

#: What the census query counts, in order, where the builder has one.
CENSUS = ("fingerprints", "rows", "deleted", "born", "nulls")
#: The counts in the order they are made, where there is no census query.
ORDER = ("fingerprints", "rows", "stale", "deleted", "born", "nulls", "duplicates")
#: Primary keys printed at -v 2, at most.
MAX_KEYS = 100


@dataclass
class Verification:
    run: Run
    fingerprints: int
    rows: int
    stale: int
    deleted: int
    born: int
    duplicates: int
    nulls: int
    rows_done: int
    stale_keys: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.stale == 0


def last_run(target: Target) -> Run:
    run = runs_for(target).order_by("-pk").first()
    if run is None:
        raise RotatorError(
            f"{target.label} has no run to verify; rotate it first (each batch fingerprints "
            "the values it replaces)"
        )
    return run


#: Each statement's share of the check's time, for the estimate of the time left:
#: measured with 1M rows on PostgreSQL (census 0.23 s, stale 0.58 s, duplicates 0.94 s).
#: Statements not listed (where there is no census) weigh 1 each.
STEP_WEIGHTS = {"census": 1.0, "stale": 2.5, "duplicates": 4.0, "stale_keys": 2.5}
#: What each statement of the check is called in its progress.
STEP_NAMES = {
    "census": "counting rows",
    "stale": "comparing values",
    "duplicates": "shared values",
    "stale_keys": "listing keys",
}


def verify(
    target: Target,
    keys: bool = False,
    events: CheckEvents | None = None,
    stopper: CheckStopper | None = None,
) -> Verification:
    """Count, for the target's last run, the rows still holding a pre-rotation value.

    ``stopper`` stops it (the statement running is cancelled); ``events`` hears each step."""
    events = events or NoCheckEvents()
    stopper = stopper or CheckStopper()
    run = last_run(target)
    proof = proof_for(run)
    missing = proof is None or (run.rows_done() and not has_fingerprints(target, run))
    if missing and run.total_rows:
        why = "without fingerprints" if proof is None else "by an older version"
        raise RotatorError(
            f"run {run.pk} of {target.label} has no fingerprints (it was planned {why}); "
            "--leaked FILE checks a dump without them, or rotate again with --restart "
            "(fingerprints are on by default)"
        )
    connection = connections[target.alias]
    builder = builder_for(connection)
    rows = builder.checked_relation(readable(builder, connection))
    queries = builder.verify_queries(connection, target, rows, stale_limit=MAX_KEYS + 1)
    what = f"--verify of {target.label} stopped; nothing was changed"
    try:
        with stopper.bound(connection, builder):
            counts, stale_keys = _count(target, run, queries, keys, events, stopper, what)
    except DatabaseError:
        if stopper.stopped:
            raise stopper.interrupted(what) from None
        raise
    stopper.checkpoint(what)
    if run.state != Run.State.FINISHED:
        # Rows the run has not reached yet have no fingerprint, and their old value.
        counts["stale"] += max(0, run.total_rows - counts["fingerprints"])
    return Verification(run=run, rows_done=run.rows_done(), stale_keys=stale_keys, **counts)


def _count(
    target: Target,
    run: Run,
    queries: dict[str, str],
    keys: bool,
    events: CheckEvents,
    stopper: CheckStopper,
    what: str,
) -> tuple[dict[str, int], list[str]]:
    """The check's statements, one step each, in one transaction (one snapshot)."""
    connection = connections[target.alias]
    builder = builder_for(connection)
    proof = proof_for(run)
    params: dict[str, list[Any]] = {"rows": [], "nulls": [], "duplicates": []}
    counts: dict[str, int] = {}
    proof_id = proof_run_id(run)
    steps = ["census", "stale", "duplicates"] if "census" in queries else list(ORDER)
    names = steps + (["stale_keys"] if keys else [])
    total = len(names)
    weights = [STEP_WEIGHTS.get(n, 1.0) if "census" in queries else 1.0 for n in names]
    started = time.monotonic()

    def step(done: int) -> None:
        share = sum(weights[:done]) / sum(weights)
        running = _step_name(names[done]) if done < total else ""
        events.check_step(done, total, running, time.monotonic() - started, share)

    step(0)
    stopper.checkpoint(what)
    analyze_proof(builder, target)
    stale_keys: list[str] = []
    with transaction.atomic(using=target.alias), connection.cursor() as cursor:
        if proof is not None:
            builder.load_proof_key(connection, target, proof.key)
        builder.prepare_check(connection)
        builder.copy_checked(connection, readable(builder, connection), proof_id)
        for done, name in enumerate(steps):
            if done:
                step(done)
            stopper.checkpoint(what)
            if name == "census":
                cursor.execute(queries["census"], [proof_id])
                counts.update(zip(CENSUS, map(int, cursor.fetchone()), strict=True))
            else:
                cursor.execute(queries[name], params.get(name, [proof_id]))
                counts[name] = int(cursor.fetchone()[0])
        if keys:
            step(len(steps))
            stopper.checkpoint(what)
            if counts["stale"]:
                cursor.execute(queries["stale_keys"], [proof_id])
                stale_keys = [str(target.key_from_text(str(k))) for (k,) in cursor.fetchall()]
    step(total)
    return counts, stale_keys


def _step_name(name: str) -> str:
    return STEP_NAMES.get(name, f"counting {name}")


def _plural(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def report(v: Verification, target: Target) -> list[str]:
    """The report's lines: no value, only counts (and keys when asked)."""
    run = v.run
    state = Run.State(run.state).label.lower()
    when = f" {run.finished_at:%Y-%m-%d %H:%M:%S %Z}" if run.finished_at else ""
    lines = [
        f"Verifying {target.label} against the {v.fingerprints:,} fingerprints of run "
        f"{run.pk} ({state}{when})."
    ]
    if run.state != Run.State.FINISHED:
        pct = 100.0 * v.rows_done / run.total_rows if run.total_rows else 100.0
        lines.append(
            f"Run {run.pk} is {state}, not finished: it rotated {v.rows_done:,} of "
            f"{run.total_rows:,} planned rows ({pct:.1f}%)."
        )
    lines += [
        f"{v.stale:,} of {v.rows:,} rows still hold a pre-rotation value",
        f"{_plural(v.deleted, 'row', 'rows')} planned and since deleted",
        f"{_plural(v.born, 'row', 'rows')} born after the plan (never held a planned value)",
        f"{_plural(v.duplicates, 'row shares', 'rows share')} a value with another row",
        f"{_plural(v.nulls, 'row is', 'rows are')} NULL",
    ]
    if v.stale_keys:
        shown = v.stale_keys[:MAX_KEYS]
        more = f" and {v.stale - len(shown):,} more" if v.stale > len(shown) else ""
        lines.append(f"Primary keys still holding a pre-rotation value: {', '.join(shown)}{more}")
    return lines


def failure(v: Verification, target: Target, resume_hint: str) -> str:
    if v.run.state in (Run.State.ACTIVE, Run.State.PAUSED):
        then = f"run {resume_hint} to finish run {v.run.pk}, then verify again"
    else:
        then = f"run {resume_hint} --restart to rotate every row again, then verify again"
    return (
        f"{v.stale:,} of {v.rows:,} rows of {target.label} still hold a pre-rotation value; {then}"
    )
