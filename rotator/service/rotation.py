"""The rotation service: validated Options in, a Report out.

``rotate()`` checks everything it can before anything changes, plans a run
(or resumes the unfinished one), runs the workers on an asyncio loop (uvloop
when installed) until no shard is left, and reports. It never prints by
policy and never ends the process: what to show goes to ``Events`` (the
command prints it; a task logs or drops it), and who may stop the run holds a
``Stopper``. The same call serves the command, a task queue and a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from django.db import DatabaseError, connections

from rotator.errors import ExitStatus, Interrupted, RotatorError, RunStopped, first_line
from rotator.faults import Kind
from rotator.generators import Generator, resolve_generator
from rotator.models import Run
from rotator.service.checking import CheckStopper
from rotator.service.dryrun import dry_run_lines, value_notes
from rotator.service.fingerprints import inherited_proof, proof_for
from rotator.service.finishing import (
    Sleeper,
    check_events,
    default_settle,
    finish_verified,
    unfinished,
)
from rotator.service.options import Options
from rotator.service.preflight import check_connection_room, check_database
from rotator.sql import Builder, builder_for
from rotator.store import claims, lifecycle
from rotator.target import Target
from rotator.workers.batch import Job
from rotator.workers.engine import Session, work
from rotator.workers.reporting import ProgressSink, Silent
from rotator.workers.throttle import Throttle, check_throttle_options

uvloop: Any
try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional (no Windows wheels)
    uvloop = None

T = TypeVar("T")

__all__ = ["Events", "Options", "Report", "Stopper", "rotate"]


class Events(Protocol):
    """Where the service says what it does; the caller decides what to show."""

    def note(self, text: str) -> None:
        """A line for people about the run (planned, resumed, ...); never a value."""

    def progress(self, run: Run, workers: int) -> ProgressSink:
        """The sink the workers report to while they run ``run``."""


class Quiet:
    """Events for a caller that shows nothing."""

    def note(self, text: str) -> None:
        pass

    def progress(self, run: Run, workers: int) -> ProgressSink:
        return Silent()


class Stopper:
    """Lets the caller stop a running rotation from any thread.

    ``stop()`` lets in-flight batches commit; ``abort()`` also cancels their
    statements (they roll back). Either way the checkpoints are exact and the
    run resumes. The command's subclass wires these to SIGINT and SIGTERM.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.status = ExitStatus.ERROR
        self._session: Session | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Cancels the final check's statement, which no batch boundary interrupts.
        self.check = CheckStopper()

    def attach(self, loop: asyncio.AbstractEventLoop, session: Session) -> None:
        """Called by the service on its loop when the workers start."""
        self._loop, self._session = loop, session

    def detach(self) -> None:
        self._loop = self._session = None

    def stop(self, reason: str, status: ExitStatus) -> None:
        if self.reason is None:
            self.reason, self.status = reason, status
        self.check.stop(self.reason, self.status)
        loop, session = self._loop, self._session
        if loop is not None and session is not None:
            loop.call_soon_threadsafe(session.stop.set)

    def abort(self) -> None:
        if self._session is not None:
            self._session.abort()

    def finishing(self, what: str) -> contextlib.AbstractContextManager[None]:
        """While the run's final check runs, after the workers: the command's subclass
        lets SIGINT and SIGTERM stop it too (``what``: the line after "Interrupted by
        ...: " if the process must be ended)."""
        return contextlib.nullcontext()

    @property
    def stopped(self) -> bool:
        return self.reason is not None


@dataclass(frozen=True)
class Report:
    """What one call of rotate() did, and where the run stands."""

    run_id: int | None
    #: Rows this call rotated, in ``seconds``, with ``workers`` workers.
    rows: int
    seconds: float
    finished: bool
    workers: int = 0
    total_rows: int = 0
    estimated: bool = False
    #: The run's rows by fate, summed over its shards (all sessions).
    rotated: int = 0
    vanished: int = 0
    kept: int = 0
    null: int = 0
    #: Other live processes still working the run (when not finished).
    held_elsewhere: list[str] = field(default_factory=list)
    #: Rows the application wrote back after their batch, found and rotated again.
    swept: int = 0
    #: Whether a check of the table proved the finished run (None: no fingerprints).
    verified: bool | None = None
    #: The run was finished by another process while this one waited or worked.
    finished_elsewhere: bool = False
    #: What --dry-run shows (empty otherwise).
    dry_run: list[str] = field(default_factory=list)


def rotate(
    target: Target,
    options: Options,
    events: Events | None = None,
    stopper: Stopper | None = None,
) -> Report:
    """Rotate ``target``: plan or resume its run, work it, report."""
    events = events or Quiet()
    stopper = stopper or Stopper()
    options.validate()
    connection = connections[target.alias]
    check_database(target.alias, options.workers)
    check_throttle_options(options, target.alias)
    check_connection_room(target.alias, options.workers)
    builder = builder_for(connection)

    unfinished = lifecycle.active_run(target)
    run = None if options.restart else unfinished
    if run is None and not options.restart:
        _refuse_done(target)
    if run is not None:
        _check_resumable(run, options.shards)

    generator = resolve_generator(target, _generator_spec(options, run))
    reason = builder.supports(target, generator)
    if reason:
        raise RotatorError(reason)
    if connection.in_atomic_block and not options.dry_run:
        raise RotatorError(
            "rotate() was called inside transaction.atomic(); it commits batch by batch, "
            "so call it outside any transaction"
        )
    # --restart keeps the proof: the fingerprints of the values before the first run.
    proof = inherited_proof(target) if options.restart and options.fingerprints else None
    # Only now, with every check passed, may --restart throw the old run away.
    if unfinished is not None and options.restart and not options.dry_run:
        lifecycle.abandon(unfinished, "abandoned by --restart")
        events.note(f"Abandoned run {unfinished.pk} of {target.label}; planning a new one.")

    shards = options.shards or options.workers * 4
    if options.dry_run:
        lines = dry_run_lines(target, options, run, shards, generator, builder)
        return Report(run.pk if run else None, 0, 0.0, False, dry_run=lines)

    run = _plan_or_resume(target, options, run, shards, generator, builder, events, proof)
    if run is None:
        return Report(None, 0, 0.0, True)

    workers = options.workers
    if not builder.concurrent_writers and workers > 1:
        events.note(
            f"{connection.display_name} has a single writer: running the {workers} workers' "
            "shards one at a time."
        )
        workers = 1
    return _execute(target, run, options, workers, generator, builder, events, stopper)


def finished_sentence(run: Run, target: Target) -> str:
    """'<label> was fully rotated by run N (finished <when>)'."""
    when = f"{run.finished_at:%Y-%m-%d %H:%M:%S %Z}" if run.finished_at else "?"
    return f"{target.label} was fully rotated by run {run.pk} (finished {when})"


def _refuse_done(target: Target) -> None:
    """A plain run after a finished or a cancelled run: say so, and ask for --restart."""
    last = lifecycle.runs_for(target).order_by("-pk").first()
    if last is None:
        return
    if last.state == Run.State.FINISHED:
        raise RotatorError(
            f"{finished_sentence(last, target)}; pass --restart to rotate every row again"
        )
    if last.state == Run.State.ABANDONED and last.stop_reason.startswith("cancelled"):
        raise RotatorError(
            f"run {last.pk} of {target.label} was cancelled ({last.stop_reason}) with "
            f"{last.rows_done():,}/{last.total_rows:,} rows rotated; pass --restart to rotate "
            "every row again"
        )


def _check_resumable(run: Run, shards: int | None) -> None:
    planned = run.shards.using(run._state.db).count()
    if shards is not None and shards != planned and planned:
        raise RotatorError(
            f"--shards {shards} does not match run {run.pk}, planned with {planned} shards; "
            "resume without --shards, or pass --restart to plan again"
        )


def _generator_spec(options: Options, run: Run | None) -> str | None:
    if options.generator is not None or run is None:
        return options.generator
    return run.options.get("generator")


def _plan_or_resume(
    target: Target,
    options: Options,
    run: Run | None,
    shards: int,
    generator: Generator,
    builder: Builder,
    events: Events,
    proof: int | None,
) -> Run | None:
    """The run to work: ``run`` made active again, or a new one (None: empty table)."""
    if run is not None:
        was = f"{run.state} " if run.state != Run.State.ACTIVE else ""
        lifecycle.resume(run)
        events.note(
            f"Resuming {was}run {run.pk} of {target.label}: "
            f"{run.rows_done():,}/{run.total_rows:,} rows already rotated."
        )
        return run
    events.note(f"Planning a run of {target.label} in {shards} shards ...")
    fingerprints = options.fingerprints and builder.hashes_on_server
    planned = {"generator": options.generator, "shards": shards, "fingerprints": fingerprints}
    if fingerprints and proof is not None:
        planned["proof"] = proof
    run, created = lifecycle.plan(target, builder, shards, planned)
    if run is None:
        events.note(f"Nothing to rotate: {target.model_label} has no rows.")
        return None
    verb = "Planned" if created else "Joined"
    about = "about " if run.options.get("estimated") else ""
    events.note(
        f"{verb} run {run.pk}: {about}{run.total_rows:,} rows of {target.label} in "
        f"{run.shards.using(run._state.db).count()} shards (keys up to {run.high_water})."
    )
    for line in value_notes(target, options, generator):
        events.note(line)
    return run


def _execute(
    target: Target,
    run: Run,
    options: Options,
    workers: int,
    generator: Generator,
    builder: Builder,
    events: Events,
    stopper: Stopper,
) -> Report:
    lifecycle.start(run)
    initial = run.rows_done()
    progress = events.progress(run, workers)
    job = Job(
        target,
        generator,
        builder,
        run_id=run.pk,
        lock_timeout=options.lock_timeout,
        fill_nulls=options.fill_nulls,
        hook=options.batch_hook,
        proof=proof_for(run),
    )
    session = Session(
        job=job,
        run=run,
        progress=progress,
        batch_size=options.batch_size,
        batch_seconds=options.batch_seconds,
        reconnect_timeout=options.reconnect_timeout,
        throttle=Throttle.from_options(options, target.alias, progress),
    )
    loop_factory = uvloop.new_event_loop if uvloop is not None else None
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            _work_until_done(runner, session, workers, stopper, target, builder, events, options)
    finally:
        session.throttle.close()
        progress.close()
    elsewhere = session.stopped is not None and session.stopped.state == Run.State.FINISHED
    if elsewhere:
        session.stopped = None
    raise_if_stopped(session, stopper, target, run, options, builder, initial)
    outcome = None
    if not elsewhere:
        with stopper.finishing(unfinished(target, run)):
            outcome = _finish(options, builder, target, run, job, events, stopper)
    run.refresh_from_db(using=run._state.db)
    finished = run.state == Run.State.FINISHED
    counts = lifecycle.tally(run)
    return Report(
        run_id=run.pk,
        rows=session.rotated,
        seconds=session.elapsed,
        finished=finished,
        workers=workers,
        total_rows=run.total_rows,
        estimated=bool(run.options.get("estimated")),
        rotated=counts["rotated"],
        vanished=counts["vanished"],
        kept=counts["kept"],
        null=counts["null"],
        held_elsewhere=[] if finished else claims.held_elsewhere(target, builder, run.pk),
        swept=int(run.options.get("swept", 0)),
        verified=outcome.verified if outcome is not None else (True if finished else None),
        finished_elsewhere=elsewhere,
    )


#: Seconds between two looks at shards held by other processes, and between two notes.
WAIT_POLL, WAIT_NOTE = 1.0, 10.0


def _work_until_done(
    runner: asyncio.Runner,
    session: Session,
    workers: int,
    stopper: Stopper,
    target: Target,
    builder: Builder,
    events: Events,
    options: Options,
) -> None:
    """Work the run's shards; while other live processes hold the rest, wait for them
    (taking any they give up), showing the run's progress, until every shard is done."""
    run, noted = session.run, 0.0
    sleeper = Sleeper(lambda: stopper.stopped)
    while True:
        runner.run(_main(session, workers, stopper))
        if stopper.stopped or session.stopped is not None or session.errors:
            return
        # The service's own connection may have died with a restarted server meanwhile.
        if _reconnecting(options, builder, target, lifecycle.all_done, run):
            return
        run.refresh_from_db(using=run._state.db)
        if run.state != Run.State.ACTIVE:
            session.stopped = RunStopped(run.state, run.stop_reason)
            return
        if time.monotonic() - noted >= WAIT_NOTE:
            noted = time.monotonic()
            held = claims.held_elsewhere(target, builder, run.pk)
            by = f" by {', '.join(held)}" if held else ""
            events.note(
                f"Waiting for the shards of run {run.pk} still being rotated{by}: "
                f"{run.rows_done():,}/{run.total_rows:,} rows rotated."
            )
        if not sleeper.sleep(WAIT_POLL):
            return
        session.stop = asyncio.Event()


async def _main(session: Session, workers: int, stopper: Stopper) -> None:
    stopper.attach(asyncio.get_running_loop(), session)
    try:
        if stopper.stopped:  # stopped before the loop ran
            session.stop.set()
        await work(session, workers)
    finally:
        stopper.detach()


def raise_if_stopped(
    session: Session,
    stopper: Stopper,
    target: Target,
    run: Run,
    options: Options,
    builder: Builder,
    initial: int,
    done_rows: str = "rows of {target} rotated",
) -> None:
    """Raise what ended the session early: an error, a stop, a pause or cancel elsewhere
    (``done_rows``: what the session's rows are, for the line that says how far it got)."""
    if not (session.errors or stopper.stopped or session.stopped):
        return
    # A server that is gone (a worker gave up reconnecting) is not asked again: say what
    # this session saw committed.
    reachable = not session.unreachable
    committed = min(run.total_rows, initial + session.rotated)
    if reachable:
        try:
            committed = _reconnecting(options, builder, target, run.rows_done)
        except DatabaseError:
            reachable = False
    done = f"{committed:,}/{run.total_rows:,} {done_rows.format(target=target.label)}"
    resume = f"run {options.resume_hint} again to resume run {run.pk}"
    if session.errors and not stopper.stopped:
        exc = session.errors[0]
        if reachable and isinstance(exc, RotatorError | DatabaseError):
            # An error the rotator diagnosed, which resuming must follow: say so in the run.
            # Anything else ends the session as a crash would (the run stays active).
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
        run.refresh_from_db(using=run._state.db)
        raise RotatorError(
            f"Run {run.pk} stopped on an error in another process ({run.error_class}: "
            f"{run.error_message}); its workers stopped: {done}; {resume}"
        )
    raise Interrupted(
        f"Run {run.pk} was {stop.state}{why}; its workers stopped: {done}", ExitStatus.CANCELLED
    )


def _finish(
    options: Options,
    builder: Builder,
    target: Target,
    run: Run,
    job: Job,
    events: Any,
    stopper: Stopper,
) -> Any:
    """The check that finishes the run, after its workers (service/finishing.py)."""
    return _reconnecting(
        options,
        builder,
        target,
        finish_verified,
        target,
        run,
        job,
        default_settle() if options.settle is None else options.settle,
        events.note,
        Sleeper(lambda: stopper.stopped, stopper.check),
        lambda: (stopper.reason or "a stop", stopper.status),
        check_events(events),
    )


def _reconnecting(
    options: Options, builder: Builder, target: Target, fn: Callable[..., T], *args: Any
) -> T:
    """Call ``fn`` on the service's own connection, which a server restart may have
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


def _as_rotator_error(exc: BaseException, target: Target, resume: str) -> BaseException:
    if isinstance(exc, Interrupted):
        return exc
    if isinstance(exc, RotatorError):
        error = RotatorError(f"{exc}; {resume}")
        error.status = exc.status
        error.__cause__ = exc.__cause__
        return error
    if isinstance(exc, DatabaseError):
        error = RotatorError(
            f"database error while rotating {target.label}: {first_line(exc)}; "
            f"no batch was half-applied: {resume}"
        )
        error.__cause__ = exc  # lets the command explain a pool timeout
        return error
    return exc
