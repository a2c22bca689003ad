"""A rotation on a task queue: plan (or resume) once, then any number of tasks work it.

``prepare()`` does everything ``rotate()`` does before its workers start (every
check, ``--restart``, plan or resume, fingerprints) and returns the run.
``work_run()`` is one queued task's share: it claims shards of run R through
the claims and checkpoints, like one more process running the command, and
returns when no shard is left for it, the run is paused or cancelled, or on an
error. The database is the coordinator: a task carries only "work on run R"
and the options that pace its batches, so a duplicate delivery, or a task
that arrives after the run has ended, does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from django.db import DatabaseError, connections

from rotator.errors import ExitStatus, RotatorError
from rotator.generators import resolve_generator
from rotator.models import Run
from rotator.service.fingerprints import inherited_proof, proof_for
from rotator.service.finishing import Sleeper, default_settle, finish_verified
from rotator.service.options import Options
from rotator.service.preflight import check_database
from rotator.service.rotation import (
    Events,
    Quiet,
    _check_resumable,
    _generator_spec,
    _plan_or_resume,
    finished_sentence,
)
from rotator.sql import Builder, builder_for
from rotator.store import claims, lifecycle
from rotator.target import Target, resolve_target
from rotator.workers.batch import Job
from rotator.workers.engine import Session, work
from rotator.workers.reporting import ProgressSink, Silent
from rotator.workers.throttle import Throttle, check_throttle_options

#: The options a queued task carries: how to pace and write its batches. Everything
#: else (shards, generator) was fixed when the run was planned and is read from it.
TASK_OPTIONS = (
    "batch_size",
    "batch_seconds",
    "lock_timeout",
    "reconnect_timeout",
    "fill_nulls",
    "max_rate",
    "pause_when",
    "max_replication_lag",
)


@dataclass(frozen=True)
class Outcome:
    """What one task's share of a run came to."""

    run_id: int
    #: The run's state when the task ended (finished, active: others still work it, ...).
    state: str
    rows: int
    seconds: float
    reason: str = ""

    def line(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return (
            f"run {self.run_id}: this task rotated {self.rows:,} rows in {self.seconds:.1f} s; "
            f"run {self.state}{why}"
        )


def task_options(options: Options) -> dict[str, Any]:
    """The JSON a task carries: ``TASK_OPTIONS`` of ``options``."""
    values = asdict(options)
    return {name: values[name] for name in TASK_OPTIONS}


def prepare(target: Target, options: Options, events: Events | None = None) -> Run | None:
    """Plan or resume ``target``'s run for queued workers (None: the table is empty).

    The checks are rotate()'s: a bad option, a finished field without --restart,
    --shards that do not match, a generator the database cannot use.
    """
    events = events or Quiet()
    options.validate()
    if options.dry_run:
        raise RotatorError("--enqueue cannot be combined with --dry-run; run them one at a time")
    check_database(target.alias, 1)  # each task holds one connection (and its own pool)
    check_throttle_options(options, target.alias)
    builder = builder_for_target(target)
    unfinished = lifecycle.active_run(target)
    run = None if options.restart else unfinished
    if run is None and not options.restart:
        finished = lifecycle.last_finished_run(target)
        if finished is not None:
            raise RotatorError(
                f"{finished_sentence(finished, target)}; pass --restart to rotate every row again"
            )
    if run is not None:
        _check_resumable(run, options.shards)
    generator = resolve_generator(target, _generator_spec(options, run))
    reason = builder.supports(target, generator)
    if reason:
        raise RotatorError(reason)
    # --restart keeps the proof: the fingerprints of the values before the first run.
    proof = inherited_proof(target) if options.restart and options.fingerprints else None
    if unfinished is not None and options.restart:
        lifecycle.abandon(unfinished, "abandoned by --restart")
        events.note(f"Abandoned run {unfinished.pk} of {target.label}; planning a new one.")
    shards = options.shards or options.workers * 4
    return _plan_or_resume(target, options, run, shards, generator, builder, events, proof)


def task_count(alias: str, workers: int) -> int:
    """How many tasks to send for ``workers``: one where the database has a single writer
    (SQLite), as rotate() runs one worker there."""
    return workers if builder_for(connections[alias]).concurrent_writers else 1


def builder_for_target(target: Target) -> Builder:
    return builder_for(connections[target.alias])


def work_run(
    run_id: int,
    database: str,
    carried: dict[str, Any] | None = None,
    progress: ProgressSink | None = None,
) -> Outcome:
    """Work run ``run_id`` of ``database`` with one worker until no shard is left for it.

    Idempotent: a run that is not active (finished, paused, cancelled, errored) or
    has no shard left to claim ends the call at once, changing nothing.
    """
    run = Run.objects.using(database).filter(pk=run_id).first()
    if run is None:
        return Outcome(run_id, "gone", 0, 0.0, "no such run (purged?)")
    if run.state != Run.State.ACTIVE:
        return Outcome(run_id, run.state, 0, 0.0, run.stop_reason)
    target = resolve_target(run.target, database)
    options = replace(Options(), **(carried or {}))
    options.validate()
    builder = builder_for_target(target)
    # The run was planned after the value-space check; a task does not sample again.
    generator = resolve_generator(target, run.options.get("generator"), space=False)
    sink = progress or Silent()
    lifecycle.start(run)
    session = Session(
        job=Job(
            target,
            generator,
            builder,
            run_id=run.pk,
            lock_timeout=options.lock_timeout,
            fill_nulls=options.fill_nulls,
            hook=options.batch_hook,
            proof=proof_for(run),
        ),
        run=run,
        progress=sink,
        batch_size=options.batch_size,
        batch_seconds=options.batch_seconds,
        reconnect_timeout=options.reconnect_timeout,
        throttle=Throttle.from_options(options, database, sink),
    )
    try:
        with asyncio.Runner() as runner:
            runner.run(work(session, 1))
    finally:
        sink.close()
    return _conclude(session, run, options)


def _conclude(session: Session, run: Run, options: Options) -> Outcome:
    """Finish the run if this task did the last shard; record an error it cannot get past."""
    rows, seconds = session.rotated, session.elapsed
    if session.errors:
        exc = session.errors[0]
        if isinstance(exc, RotatorError | DatabaseError) and not session.unreachable:
            # The same rule as rotate(): a diagnosed error stops the run for every task.
            with contextlib.suppress(DatabaseError):
                lifecycle.error(run, exc)
        raise exc
    if session.stopped is not None:
        return Outcome(run.pk, session.stopped.state, rows, seconds, session.stopped.reason)
    # Every task that runs out of shards tries; only the one after the last shard gets past
    # the check of the table (and its sweeps) and finishes the run.
    settle = default_settle() if options.settle is None else options.settle
    finish_verified(
        session.job.target,
        run,
        session.job,
        settle,
        lambda text: None,
        Sleeper(lambda: False),
        lambda: ("a stop", ExitStatus.ERROR),
    )
    run.refresh_from_db(using=run._state.db)
    holders = [] if run.state == Run.State.FINISHED else claims_held(run)
    reason = f"shards held by {', '.join(holders)}" if holders else ""
    return Outcome(run.pk, run.state, rows, seconds, reason)


def claims_held(run: Run) -> list[str]:
    target = resolve_target(run.target, run.database)
    return claims.held_elsewhere(target, builder_for_target(target), run.pk)


#: Seconds without a live holder of a shard after which --wait says so.
UNHELD = 15.0


def follow(run: Run, sink: ProgressSink, every: float = 1.0) -> Run:
    """Report run ``run``'s progress to ``sink`` until it is no longer active; return it.

    The tasks work elsewhere: this only reads the shards' checkpoints. A run that no
    live task holds for ``UNHELD`` seconds (no worker started, all of them lost) is
    shown as such, and the follow goes on: a worker may still come.
    """
    done = run.rows_done()
    quiet_since = time.monotonic()
    while True:
        time.sleep(every)
        run.refresh_from_db(using=run._state.db)
        now = run.rows_done()
        if now > done:
            sink.advance(now - done)
            done, quiet_since = now, time.monotonic()
        if run.state != Run.State.ACTIVE:
            return run
        if lifecycle.finish(run):  # the last task finishes it; this only closes a race
            return run
        unheld = not claims_held(run) and time.monotonic() - quiet_since > UNHELD
        sink.set_status(
            "no live task holds a shard: is a worker running?" if unheld else None, "queue"
        )
        sink.tick()
