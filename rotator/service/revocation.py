"""The revocation service: delete a model's rows (all, or those a leaked dump names) in
sharded, resumable batches, with the rotation's run store, workers and dialects.

Planning copies the keys of the rows to delete into ``RevocationKey`` on the
server, numbered in key order (``Revoking.snapshot_keys``; with ``--leaked``
the dump is loaded as ``--leaked`` loads it and only matching rows are
copied). Shards are ranges of those row numbers, so no key (which may be the
secret itself) is ever a bind parameter, a cursor or a shard bound, and rows
created after the plan (a new session, a fresh token) are never deleted.
Batches run in ``workers/revoke_batch.py``; the run is a ``Run`` like any
other (``options["operation"] == "revoke"``, ``Run.column`` REVOKE_COLUMN),
so --status, --pause, --cancel and the admin work on it. Like ``rotate()``,
it never prints and never ends the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connections

from rotator.errors import ExitStatus, Interrupted, RotatorError
from rotator.generators import Generator
from rotator.models import UNFINISHED, RevocationKey, Run
from rotator.service import leaked
from rotator.service.options import Options
from rotator.service.preflight import check_database
from rotator.service.rotation import (
    Events,
    Quiet,
    Report,
    Stopper,
    _as_rotator_error,
    _main,
    _reconnecting,
    uvloop,
)
from rotator.sql import Builder, builder_for
from rotator.sql.base import positions
from rotator.sql.revoke_base import Revoking, match_condition
from rotator.store import claims, lifecycle
from rotator.store.planning import Plan, ShardPlan
from rotator.target import RevokeTarget, Target
from rotator.workers.engine import Session
from rotator.workers.revoke_batch import RevokeJob
from rotator.workers.throttle import Throttle, check_throttle_options

OPERATION = "revoke"
#: A revocation makes no values; the Job's generator slot holds this.
NO_VALUES = Generator("revoke_rows (no new values)", None)


@dataclass(frozen=True)
class Dump:
    """--leaked FILE: the values whose rows go (``column``: a CSV's; ``hashed``: sha256 hex)."""

    path: Path
    column: str | None = None
    hashed: bool = False


def revoke(
    target: RevokeTarget,
    options: Options,
    dump: Dump | None = None,
    events: Events | None = None,
    stopper: Stopper | None = None,
) -> Report:
    """Revoke ``target``'s rows (those ``dump`` names, or all): plan or resume, work, report."""
    events = events or Quiet()
    stopper = stopper or Stopper()
    options.validate()
    connection = connections[target.alias]
    check_database(target.alias, options.workers)
    check_throttle_options(options, target.alias)
    builder = builder_for(connection)
    if not isinstance(builder, Revoking):
        raise AssertionError("unreachable: every builder mixes in Revoking")
    if connection.in_atomic_block and not options.dry_run:
        raise RotatorError(
            "revoke() was called inside transaction.atomic(); it commits batch by batch, "
            "so call it outside any transaction"
        )
    forget_ended(target)
    run = lifecycle.active_run(target)
    if run is not None:
        _check_resumable(run, target, options.shards, dump)
    shards = options.shards or options.workers * 4
    if options.dry_run:
        return Report(
            run.pk if run else None,
            0,
            0.0,
            False,
            dry_run=dry_run_lines(target, options, run, shards, dump, builder),
        )
    run = _plan_or_resume(target, run, shards, dump, builder, events)
    if run is None:
        return Report(None, 0, 0.0, True)
    workers = options.workers
    if not builder.concurrent_writers and workers > 1:
        events.note(
            f"{connection.display_name} has a single writer: running the {workers} workers' "
            "shards one at a time."
        )
        workers = 1
    return _execute(target, run, options, workers, builder, events, stopper)


def forget_ended(target: Target) -> int:
    """Delete the planned keys of the target's finished and abandoned revocations."""
    ended = lifecycle.runs_for(target).exclude(state__in=UNFINISHED)
    tags = [run.options.get("snapshot") for run in ended.only("options")]
    tags = [tag for tag in tags if tag]
    if not tags:
        return 0
    keys = RevocationKey.objects.using(target.alias).filter(snapshot__in=tags)
    return keys._raw_delete(target.alias)


def _check_resumable(run: Run, target: Target, shards: int | None, dump: Dump | None) -> None:
    planned = run.shards.count()
    if shards is not None and shards != planned:
        raise RotatorError(
            f"--shards {shards} does not match run {run.pk}, planned with {planned} shards; "
            "resume without --shards, or --cancel the run and plan again"
        )
    was = run.options.get("leaked")
    if dump is not None and str(dump.path) != was:
        source = f"from {was!r}" if was else "for every row"
        raise RotatorError(
            f"run {run.pk} of {target.label} was planned {source}, not from "
            f"{str(dump.path)!r}; resume it without --leaked, or --cancel it and plan again"
        )


def _snapshot(target: Target, builder: Any, dump: Dump | None, tag: str, notes: dict) -> int:
    """Copy the keys of the rows to delete (inside the planning transaction)."""
    connection = connections[target.alias]
    if dump is None:
        return int(builder.snapshot_keys(connection, target, tag, None))
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the driver's cursor: values never reach Django's query log
        builder.leaked_table(connection, target, raw, leaked.TEMP, dump.hashed)
        try:
            values = leaked._values(target, dump.path, dump.column, dump.hashed)
            notes["leaked_lines"] = builder.load_leaked(raw, leaked.TEMP, values)
            match = match_condition(builder, connection, target, leaked.TEMP, dump.hashed)
            return int(builder.snapshot_keys(connection, target, tag, match))
        finally:
            with contextlib.suppress(Exception):
                raw.execute(f"DROP TABLE IF EXISTS {leaked.TEMP}")


def _plan_or_resume(
    target: RevokeTarget,
    run: Run | None,
    shards: int,
    dump: Dump | None,
    builder: Builder,
    events: Events,
) -> Run | None:
    if run is not None:
        was = f"{run.state} " if run.state != Run.State.ACTIVE else ""
        lifecycle.resume(run)
        events.note(
            f"Resuming {was}run {run.pk} of {target.label}: "
            f"{run.rows_done():,}/{run.total_rows:,} planned rows already revoked."
        )
        return run
    tag = uuid.uuid4().hex
    options: dict[str, Any] = {
        "operation": OPERATION,
        "snapshot": tag,
        "leaked": str(dump.path) if dump else None,
        "shards": shards,
    }

    def make(target: Target, builder: Builder, shards: int) -> Plan:
        total = _snapshot(target, builder, dump, tag, options)
        if not total:
            return Plan(None, 0, [])
        ends = positions(total, shards)
        bounds = zip([None, *map(str, ends)], map(str, ends), strict=False)
        counts = [end - start for start, end in zip([0, *ends], ends, strict=False)]
        plans = [
            ShardPlan(i, lower, upper, rows)
            for i, ((lower, upper), rows) in enumerate(zip(bounds, counts, strict=True))
        ]
        return Plan(str(total), total, plans)

    which = f"rows in {str(dump.path)!r}" if dump else "every row"
    events.note(f"Planning a revocation of {which} of {target.label} in {shards} shards ...")
    run, created = lifecycle.plan(target, builder, shards, options, make)
    if run is None:
        if dump is None:
            events.note(f"Nothing to revoke: {target.label} has no rows.")
        else:
            lines = options.get("leaked_lines", 0)
            events.note(
                f"Nothing to revoke: none of the {lines:,} leaked values in "
                f"{str(dump.path)!r} is in {target.label}.{target.field.name}."
            )
        return None
    verb = "Planned" if created else "Joined"
    events.note(
        f"{verb} run {run.pk}: {run.total_rows:,} rows of {target.label} to revoke in "
        f"{run.shards.count()} shards; rows created from now on are kept."
    )
    return run


def _execute(
    target: RevokeTarget,
    run: Run,
    options: Options,
    workers: int,
    builder: Builder,
    events: Events,
    stopper: Stopper,
) -> Report:
    lifecycle.start(run)
    initial = run.rows_done()
    progress = events.progress(run, workers)
    session = Session(
        job=RevokeJob(
            target,
            NO_VALUES,
            builder,
            run_id=run.pk,
            lock_timeout=options.lock_timeout,
            hook=options.batch_hook,
            snapshot=run.options["snapshot"],
        ),
        run=run,
        progress=progress,
        batch_size=options.batch_size,
        reconnect_timeout=options.reconnect_timeout,
        throttle=Throttle.from_options(options, target.alias, progress),
    )
    loop_factory = uvloop.new_event_loop if uvloop is not None else None
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_main(session, workers, stopper))
        finished = (
            not stopper.stopped
            and session.stopped is None
            and not session.errors
            and _reconnecting(options, builder, target, lifecycle.finish, run)
        )
    finally:
        progress.close()
    _raise_if_stopped(session, stopper, target, run, options, builder, initial)
    if finished:
        forget_ended(target)
    counts = lifecycle.tally(run)
    return Report(
        run_id=run.pk,
        rows=session.rotated,
        seconds=session.elapsed,
        finished=finished,
        workers=workers,
        total_rows=run.total_rows,
        rotated=counts["rotated"],
        vanished=counts["vanished"],
        held_elsewhere=[] if finished else claims.held_elsewhere(target, builder, run.pk),
    )


def _raise_if_stopped(
    session: Session,
    stopper: Stopper,
    target: Target,
    run: Run,
    options: Options,
    builder: Builder,
    initial: int,
) -> None:
    """Raise what ended the session early: an error, a stop, a pause or cancel elsewhere."""
    if not (session.errors or stopper.stopped or session.stopped):
        return
    reachable = True
    try:
        committed = _reconnecting(options, builder, target, run.rows_done)
    except DatabaseError:
        committed = min(run.total_rows, initial + session.rotated)
        reachable = False
    done = f"{committed:,}/{run.total_rows:,} planned rows of {target.label} revoked"
    resume = f"run {options.resume_hint} again to resume run {run.pk}"
    if session.errors and not stopper.stopped:
        exc = session.errors[0]
        if reachable and isinstance(exc, RotatorError | DatabaseError):
            with contextlib.suppress(DatabaseError):
                lifecycle.error(run, exc)
        raise _as_rotator_error(exc, target, f"{done}; {resume}")
    if stopper.stopped:
        raise Interrupted(f"Interrupted by {stopper.reason}: {done}; {resume}", stopper.status)
    stop = session.stopped
    if stop is None:
        raise AssertionError("unreachable")
    why = f" ({stop.reason})" if stop.reason else ""
    if stop.state == Run.State.PAUSED:
        raise Interrupted(f"Paused by an operator{why}: {done}; {resume}", ExitStatus.PAUSED)
    if stop.state == Run.State.ERRORED:
        raise RotatorError(f"Run {run.pk} stopped on an error in another process: {done}; {resume}")
    raise Interrupted(
        f"Run {run.pk} was {stop.state}{why}; its workers stopped: {done}", ExitStatus.CANCELLED
    )


def dry_run_lines(
    target: RevokeTarget,
    options: Options,
    run: Run | None,
    shards: int,
    dump: Dump | None,
    builder: Any,
) -> list[str]:
    """What --dry-run shows: which rows would go, the plan, the SQL of one batch."""
    connection = connections[target.alias]
    lines = [
        "Dry run: nothing will be changed.",
        f"Target: {target.label} on database {target.alias!r} ({connection.vendor}); no "
        "other table references its rows with an on_delete rule a DELETE would skip",
    ]
    if run is not None:
        lines.append(
            f"Would resume run {run.pk}: {run.rows_done():,}/{run.total_rows:,} planned rows "
            f"revoked, in {run.shards.count()} shards"
        )
    elif dump is not None:
        found = leaked.count_leaked(target, dump.path, dump.column, dump.hashed)
        lines.append(
            f"Would revoke the {found.present:,} rows of {target.label} whose "
            f"{target.field.name} is one of the {found.lines:,} leaked values in "
            f"{str(dump.path)!r}, in up to {shards} shards"
        )
    else:
        rows = target.queryset().count()
        lines.append(
            f"Would revoke every row of {target.label} ({rows:,} rows now; rows created after "
            f"the plan are kept), in up to {shards} shards"
        )
    lines.append(f"Workers: {options.workers}")
    lines.append("SQL of one batch (the keys never leave the server):")
    lines += [f"  {line}" for line in builder.describe_revoke(connection, target).splitlines()]
    return lines
