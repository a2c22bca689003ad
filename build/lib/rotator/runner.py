"""Rotate one field: check, plan or resume, run the workers, report.

``rotate()`` is the engine's entry point; the management commands only parse
arguments and call it. It runs the asyncio loop (uvloop when installed) and
turns SIGINT/SIGTERM into a clean stop: the first signal lets in-flight
batches commit, a second cancels them (they roll back). Either way the
checkpoints are exact and the same command resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, connections

from . import claims, runs
from .batch import Job
from .checks import check_database, check_options
from .dryrun import print_dry_run
from .engine import Session, work
from .errors import Interrupted, RotatorError
from .generators import Generator, resolve_generator
from .models import Run
from .plan import make_plan
from .progress import Progress, Stream, format_duration
from .sql import builder_for
from .target import Target

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional (no Windows wheels)
    uvloop = None


@dataclass(frozen=True)
class Options:
    workers: int = 4
    batch_size: int | None = None
    shards: int | None = None
    generator: str | None = None
    restart: bool = False
    dry_run: bool = False
    verbosity: int = 1
    tty: bool = False
    progress_interval: float = 5.0
    resume_hint: str = "the same command"
    #: Called inside every batch transaction, after the UPDATE (a test seam).
    batch_hook: Callable[[Any], None] | None = None


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
    check_database(target.alias, options.workers)
    connection = connections[target.alias]
    builder = builder_for(connection)

    unfinished = runs.active_run(target)
    run = None if options.restart else unfinished
    if run is None and not options.restart:
        finished = runs.last_finished_run(target)
        if finished is not None:
            raise RotatorError(runs.describe_finished(finished, target))
    if run is not None:
        runs.check_resumable(run, options.shards)

    generator = resolve_generator(target, _generator_spec(options, run))
    reason = builder.supports(target, generator)
    if reason:
        raise RotatorError(reason)
    # Only now, with every check passed, may --restart throw the old run away.
    if unfinished is not None and options.restart and not options.dry_run:
        runs.abandon(unfinished)
        if options.verbosity >= 1:
            out.write(f"Abandoned run {unfinished.pk} of {target.label}; planning a new one.")

    shards = options.shards or options.workers * 4
    if options.dry_run:
        print_dry_run(target, options, run, shards, generator, builder, out)
        return Report(run.pk if run else None, 0, 0.0, False)

    if run is None:
        plan = make_plan(target, shards)
        run, created = runs.create_run(
            target,
            plan,
            {"generator": options.generator, "shards": len(plan.shards)},
        )
        if options.verbosity >= 1:
            verb = "Planned" if created else "Joined"
            out.write(
                f"{verb} run {run.pk}: {run.total_rows:,} rows of {target.label} in "
                f"{run.shards.count()} shards (keys up to {run.high_water})."
            )
    elif options.verbosity >= 1:
        out.write(
            f"Resuming run {run.pk} of {target.label}: {run.rows_done():,}/{run.total_rows:,} "
            "rows already rotated."
        )

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
    builder: Any,
    err: Stream,
    out: Stream,
) -> Report:
    runs.mark_started(run)
    progress = Progress(
        err,
        total=run.total_rows,
        initial=run.rows_done(),
        verbosity=options.verbosity,
        tty=options.tty,
        interval=options.progress_interval,
        desc=target.label,
    )
    session = Session(
        job=Job(target, generator, builder, hook=options.batch_hook),
        run_id=run.pk,
        progress=progress,
        batch_size=options.batch_size,
    )
    signals: list[int] = []
    loop_factory = uvloop.new_event_loop if uvloop is not None else None
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_main(session, workers, signals))
        interrupted = bool(signals)
        finished = not interrupted and not session.errors and runs.finish_if_complete(run)
        if finished:
            progress.complete()  # rows deleted since planning would leave it short
    finally:
        progress.close()

    seconds = progress.elapsed
    rows = progress.rotated
    if session.errors and not interrupted:
        raise _as_rotator_error(session.errors[0], target)
    if interrupted:
        name = signal.Signals(signals[0]).name
        done = run.rows_done()
        raise Interrupted(
            f"Interrupted by {name}: {done:,}/{run.total_rows:,} rows of {target.label} "
            f"rotated; run {options.resume_hint} again to resume run {run.pk}",
            returncode=128 + signals[0],
        )
    if options.verbosity >= 1:
        rate = rows / seconds if seconds > 0 else 0.0
        out.write(
            f"Rotated {rows:,} rows of {target.label} in {format_duration(seconds)} "
            f"({rate:,.0f} rows/s) with {workers} worker{'s' if workers != 1 else ''}; "
            f"run {run.pk} " + ("finished." if finished else "is not finished.")
        )
        if not finished:
            others = claims.held_elsewhere(target, run.pk)
            where = f" by {', '.join(others)}" if others else ""
            out.write(f"Its remaining shards are being rotated{where}.")
    return Report(run.pk, rows, seconds, finished)


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
            session.abort()

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


def _as_rotator_error(exc: BaseException, target: Target) -> BaseException:
    if isinstance(exc, RotatorError):
        return exc
    if isinstance(exc, DatabaseError):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        error = RotatorError(
            f"database error while rotating {target.label}: {first}; "
            "no batch was half-applied, run the command again to resume"
        )
        error.__cause__ = exc  # lets the command explain a pool timeout
        return error
    return exc
