"""Rotate one field: check, plan or resume, run the workers, report.

``rotate()`` is the engine's entry point; the management commands only parse
arguments and call it. It runs the asyncio loop (uvloop when installed) and
turns SIGINT/SIGTERM into a clean stop: the first signal lets in-flight
batches commit, a second cancels them (they roll back) and ends the process
within seconds whatever the server does. Either way the checkpoints are
exact and the same command resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import DatabaseError, connections

from rotator.command.progress import Progress, Stream, check_progress_options, format_duration
from rotator.errors import Interrupted, RotatorError, RunStopped
from rotator.models import Run
from rotator.service.dryrun import print_dry_run, value_notes
from rotator.service.fingerprints import record as record_fingerprints
from rotator.service.generators import Generator, resolve_generator
from rotator.service.options import Options
from rotator.service.preflight import check_database, check_options
from rotator.service.target import Target
from rotator.sql import Builder, builder_for
from rotator.store import claims, lifecycle
from rotator.workers.batch import Job
from rotator.workers.engine import Session, work
from rotator.workers.faults import Kind
from rotator.workers.throttle import Throttle, check_throttle_options

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional (no Windows wheels)
    uvloop = None

T = TypeVar("T")

#: Exit statuses of a run stopped from elsewhere (see README).
PAUSED_EXIT = 3
CANCELLED_EXIT = 4
#: After a second Ctrl-C, the process ends this many seconds later at the latest.
HARD_EXIT_AFTER = 3.0


@dataclass(frozen=True)
class Report:
    run_id: int | None
    rows: int
    seconds: float
    finished: bool


def _generator_spec(options: Options, run: Run | None) -> str | None:
    if options.generator is not None or run is None:
        return options.generator
    return run.options.get("generator")


def rotate(target: Target, options: Options, out: Stream, err: Stream) -> Report:
    check_options(options)
    check_progress_options(options)  # ops
    connection = connections[target.alias]
    check_database(target.alias, options.workers)
    check_throttle_options(options, target.alias)  # ops
    builder = builder_for(connection)

    unfinished = lifecycle.active_run(target)
    run = None if options.restart else unfinished
    if run is None and not options.restart:
        finished = lifecycle.last_finished_run(target)
        if finished is not None:
            raise RotatorError(lifecycle.describe_finished(finished, target))
    if run is not None:
        lifecycle.check_resumable(run, options.shards)

    generator = resolve_generator(target, _generator_spec(options, run))
    reason = builder.supports(target, generator)
    if reason:
        raise RotatorError(reason)
    if connection.in_atomic_block and not options.dry_run:
        raise RotatorError(
            "rotate() was called inside transaction.atomic(); it commits batch by batch, "
            "so call it outside any transaction"
        )
    # Only now, with every check passed, may --restart throw the old run away.
    if unfinished is not None and options.restart and not options.dry_run:
        lifecycle.abandon(unfinished, "abandoned by --restart")
        if options.verbosity >= 1:
            out.write(f"Abandoned run {unfinished.pk} of {target.label}; planning a new one.")

    shards = options.shards or options.workers * 4
    if options.dry_run:
        print_dry_run(target, options, run, shards, generator, builder, out)
        return Report(run.pk if run else None, 0, 0.0, False)

    if run is None:
        if options.verbosity >= 1:
            out.write(f"Planning a run of {target.label} in {shards} shards ...")
        run, created = lifecycle.plan_run(
            target, builder, shards, {"generator": options.generator, "shards": shards}
        )
        if run is None:
            if options.verbosity >= 1:
                out.write(f"Nothing to rotate: {target.model_label} has no rows.")
            return Report(None, 0, 0.0, True)
        if options.verbosity >= 1:
            verb = "Planned" if created else "Joined"
            about = "about " if run.options.get("estimated") else ""
            out.write(
                f"{verb} run {run.pk}: {about}{run.total_rows:,} rows of {target.label} in "
                f"{run.shards.count()} shards (keys up to {run.high_water})."
            )
            for line in value_notes(target, options, generator):
                out.write(line)
    else:
        paused = run.state == Run.State.PAUSED
        lifecycle.resume_paused(run)
        if options.verbosity >= 1:
            out.write(
                f"Resuming {'paused ' if paused else ''}run {run.pk} of {target.label}: "
                f"{run.rows_done():,}/{run.total_rows:,} rows already rotated."
            )
    if options.fingerprints:
        record_fingerprints(target, run)  # a no-op once the run has them or has begun

    workers = options.workers
    if not builder.concurrent_writers and workers > 1:
        if options.verbosity >= 1:
            out.write(
                f"{connection.display_name} has a single writer: running the {workers} workers' "
                "shards one at a time."
            )
        workers = 1

    return _execute(target, run, options, workers, generator, builder, err, out)


def _execute(
    target: Target,
    run: Run,
    options: Options,
    workers: int,
    generator: Generator,
    builder: Builder,
    err: Stream,
    out: Stream,
) -> Report:
    lifecycle.mark_started(run)
    progress = Progress(
        err,
        total=run.total_rows,
        initial=run.rows_done(),
        verbosity=options.verbosity,
        tty=options.tty,
        interval=options.progress_interval,
        desc=target.label,
        mode=options.progress,  # ops
        run_id=run.pk,  # ops
        workers=workers,  # ops
    )
    session = Session(
        job=Job(
            target,
            generator,
            builder,
            run_id=run.pk,
            lock_timeout=options.lock_timeout,
            fill_nulls=options.fill_nulls,
            hook=options.batch_hook,
        ),
        run_id=run.pk,
        progress=progress,
        batch_size=options.batch_size,
        reconnect_timeout=options.reconnect_timeout,
        throttle=Throttle.from_options(options, target.alias, progress),  # ops
    )
    signals: list[int] = []
    loop_factory = uvloop.new_event_loop if uvloop is not None else None
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_main(session, workers, signals))
        stopped = bool(signals) or session.stopped is not None
        finished = (
            not stopped
            and not session.errors
            and _reconnecting(builder, target, options, lifecycle.finish_if_complete, run)
        )
    finally:
        progress.close()

    seconds = progress.elapsed
    rows = progress.rotated
    try:
        committed = _reconnecting(builder, target, options, run.rows_done)
    except DatabaseError:  # the server is gone: say what this session saw committed
        committed = progress.done
    done = f"{committed:,}/{run.total_rows:,} rows of {target.label} rotated"
    resume = f"run {options.resume_hint} again to resume run {run.pk}"
    if session.errors and not signals:
        raise _as_rotator_error(session.errors[0], target, f"{done}; {resume}")
    if signals:
        name = signal.Signals(signals[0]).name
        raise Interrupted(f"Interrupted by {name}: {done}; {resume}", returncode=128 + signals[0])
    if session.stopped is not None:
        raise _stopped(session.stopped, run, done, resume)
    if options.verbosity >= 1:
        rate = rows / seconds if seconds > 0 else 0.0
        out.write(
            f"Rotated {rows:,} rows of {target.label} in {format_duration(seconds)} "
            f"({rate:,.0f} rows/s) with {workers} worker{'s' if workers != 1 else ''}; "
            f"run {run.pk} " + ("finished." if finished else "is not finished.")
        )
        accounting = _accounting(run) if finished else None
        if accounting:
            out.write(accounting)
        elif not finished:
            others = claims.held_elsewhere(target, builder, run.pk)
            where = f" by {', '.join(others)}" if others else ""
            out.write(f"Its remaining shards are being rotated{where}.")
    return Report(run.pk, rows, seconds, finished)


def _reconnecting(
    builder: Builder, target: Target, options: Options, fn: Callable[..., T], *args: Any
) -> T:
    """Call ``fn`` on the command's own connection, which a server restart may have
    killed while the workers ran: reopen it, within the reconnect timeout."""
    deadline = time.monotonic() + options.reconnect_timeout
    while True:
        try:
            return fn(*args)
        except DatabaseError as exc:
            fault = builder.fault(exc)
            if fault is None or fault.kind is not Kind.CONNECTION or time.monotonic() > deadline:
                raise
            with contextlib.suppress(Exception):
                connections[target.alias].close()
            time.sleep(0.5)


def _accounting(run: Run) -> str | None:
    """Where every planned row went, when not every one was simply rotated."""
    counts = lifecycle.tally(run)
    parts = [f"{counts['rotated']:,} rotated"]
    if counts["kept"]:
        parts.append(f"{counts['kept']:,} kept the value the application gave them meanwhile")
    if counts["null"]:
        parts.append(f"{counts['null']:,} NULL left NULL")
    unseen = run.total_rows - counts["rotated"] - counts["kept"] - counts["null"]
    vanished = counts["vanished"] + max(0, unseen - counts["vanished"])
    if vanished and not run.options.get("estimated"):
        parts.append(f"{vanished:,} vanished (deleted during the run)")
    if len(parts) == 1 and not run.options.get("estimated"):
        return None
    about = "about " if run.options.get("estimated") else ""
    return f"Run {run.pk}: {about}{run.total_rows:,} rows planned; " + ", ".join(parts) + "."


def _stopped(stop: RunStopped, run: Run, done: str, resume: str) -> Interrupted:
    why = f" ({stop.reason})" if stop.reason else ""
    if stop.state == Run.State.PAUSED:
        return Interrupted(f"Paused by an operator{why}: {done}; {resume}", PAUSED_EXIT)
    return Interrupted(
        f"Run {run.pk} was {stop.state}{why}; its workers stopped: {done}", CANCELLED_EXIT
    )


async def _main(session: Session, workers: int, signals: list[int]) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        signals.append(signum)
        if len(signals) == 1:
            session.stop.set()
            session.progress.message(
                "Stopping: letting in-flight batches commit (press Ctrl-C again to abort them)."
            )
        else:
            session.progress.message("Aborting: in-flight batches roll back.")
            # Whatever the server does (an unresponsive backend), end soon: every
            # batch is one transaction, so a hard exit loses nothing committed.
            timer = threading.Timer(HARD_EXIT_AFTER, os._exit, args=(128 + signals[0],))
            timer.daemon = True
            timer.start()
            threading.Thread(target=session.abort, daemon=True).start()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
    try:
        await work(session, workers)
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def _as_rotator_error(exc: BaseException, target: Target, resume: str) -> BaseException:
    if isinstance(exc, Interrupted):
        return exc
    if isinstance(exc, RotatorError):
        error = RotatorError(f"{exc}; {resume}")
        error.returncode = exc.returncode
        error.__cause__ = exc.__cause__
        return error
    if isinstance(exc, DatabaseError):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        error = RotatorError(
            f"database error while rotating {target.label}: {first}; "
            f"no batch was half-applied: {resume}"
        )
        error.__cause__ = exc  # lets the command explain a pool timeout
        return error
    return exc
