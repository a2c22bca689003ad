"""N asyncio workers, each on its own thread and database connection.

Django's async ORM sends every call through ``sync_to_async(thread_sensitive=
True)``: one thread, one connection for all coroutines, so naive "async
workers" run one at a time and interleave their transactions on a single
connection. Here each worker enters its own ``ThreadSensitiveContext``, which
gives it a thread of its own, hence a Django connection of its own and its
own transactions; the event loop only schedules, counts and reports.

A live database has passing faults: a worker retries its batch after a
deadlock, a lock timeout (smaller, after a pause) or a lost connection (it
reconnects, waiting out a restarting server up to ``reconnect_timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

from rotator.errors import RotatorError, RunStopped, ShardLost, first_line
from rotator.faults import Fault, Kind
from rotator.models import Run
from rotator.store import claims, lifecycle
from rotator.workers.batch import BatchResult, Job, run_batch
from rotator.workers.reporting import ProgressSink, Silent
from rotator.workers.retries import Retries
from rotator.workers.sizing import BatchSizer
from rotator.workers.throttle import Throttle, sleep_unless_stopped

T = TypeVar("T")

#: A batch running longer than this is asked what it waits for.
SLOW_BATCH = 1.0


@dataclass
class Session:
    """What one invocation's workers share (all touched from the event loop only)."""

    job: Job
    run: Run
    batch_size: int | None
    progress: ProgressSink = field(default_factory=Silent)
    #: What the adaptive batch size aims at (None: sizing.TARGET_SECONDS).
    batch_seconds: float | None = None
    reconnect_timeout: float = 60.0
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    name: str = field(default_factory=lambda: uuid.uuid4().hex)
    connections: dict[int, BaseDatabaseWrapper] = field(default_factory=dict)
    backends: dict[int, int | None] = field(default_factory=dict)
    connection_ids: dict[int, str] = field(default_factory=dict)
    #: What cancels each worker's statement from another thread, made when it connected
    #: (mysqlclient refuses to be asked for its session id while a statement runs).
    interrupters: dict[int, Callable[[], None]] = field(default_factory=dict)
    in_batch: dict[int, float] = field(default_factory=dict)  # worker -> batch start
    errors: list[BaseException] = field(default_factory=list)
    stopped: RunStopped | None = None  # the run was paused or cancelled elsewhere
    throttle: Throttle = field(default_factory=Throttle)  # --max-rate, --pause-when
    rotated: int = 0  # rows this session rotated
    unreachable: bool = False  # a worker gave up reconnecting
    started: float = field(default_factory=time.monotonic)

    @property
    def run_id(self) -> int:
        return self.run.pk

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def abort(self) -> None:
        """Cancel in-flight statements now; their transactions roll back."""
        self.stop.set()
        for interrupt in list(self.interrupters.values()):
            with contextlib.suppress(Exception):
                interrupt()


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await sync_to_async(fn, thread_sensitive=True)(*args)


async def _sleep(session: Session, seconds: float) -> None:
    await sleep_unless_stopped(seconds, session.stop)


def _open(session: Session, worker: int, fresh: bool = False) -> None:
    job = session.job
    connection = connections[job.target.alias]
    if fresh:
        with contextlib.suppress(Exception):
            connection.close()
    connection.ensure_connection()
    if fresh:  # the application's connections come first (a full server is waited out)
        from rotator.service.preflight import check_reconnect_room

        check_reconnect_room(connection)
    job.builder.prepare_session(
        connection, job.target, f"rotator run {session.run_id} worker {worker}"
    )
    session.connections[worker] = connection
    session.backends[worker] = job.builder.backend_id(connection)
    session.connection_ids[worker] = job.builder.connection_id(connection)
    session.interrupters[worker] = job.builder.interrupter(connection)


def _close(session: Session, worker: int) -> None:
    session.connections.pop(worker, None)
    session.backends.pop(worker, None)
    session.interrupters.pop(worker, None)
    connection = connections[session.job.target.alias]
    # A pooled connection must not carry this worker's shard locks to its next user
    # (behind a transaction pooler no lock was taken, and unlocking all would free
    # another client's locks on the shared server connection).
    with contextlib.suppress(Exception):
        if connection.connection is not None:
            session.job.builder.end_session(connection)
    with contextlib.suppress(Exception):
        if connection.connection is not None and claims.uses_locks(session.job.builder, connection):
            session.job.builder.disown_all(connection)
    connection.close()


def _fault(session: Session, exc: BaseException) -> Fault | None:
    if session.stop.is_set() or not isinstance(exc, DatabaseError):
        return None
    return session.job.builder.fault(exc)


async def _reconnect(session: Session, worker: int, fault: Fault) -> None:
    """Get a new connection, waiting out a restarting server up to reconnect_timeout."""
    session.progress.message(f"worker {worker}: {fault.what}; reconnecting")
    deadline = time.monotonic() + session.reconnect_timeout
    pause = 0.2
    while not session.stop.is_set():
        try:
            await _in_thread(_open, session, worker, True)
        except DatabaseError as exc:
            if time.monotonic() + pause > deadline:
                session.unreachable = True
                raise RotatorError(
                    f"the database was unreachable for {session.reconnect_timeout:g} s "
                    f"({first_line(exc)}); every committed batch is kept"
                ) from exc
            await _sleep(session, pause)
            pause = min(2.0, pause * 2)
        else:
            session.progress.message(f"worker {worker}: reconnected", level=2)
            return


async def _call(session: Session, worker: int, fn: Callable[..., T], *args: Any) -> T:
    """Run a short statement (claim, release) in the worker's thread, surviving faults."""
    retries = Retries()
    while True:
        try:
            return await _in_thread(fn, *args)
        except DatabaseError as exc:
            fault = _fault(session, exc)
            if fault is None or retries.exhausted:
                raise
            pause = retries.record(fault)
            if fault.kind is Kind.CONNECTION:
                await _reconnect(session, worker, fault)
            await _sleep(session, pause)
            if session.stop.is_set():
                raise


async def _work_shard(
    session: Session, worker: int, lease: claims.Lease, sizer: BatchSizer
) -> None:
    """Rotate ``lease``'s shard batch by batch until it is done, lost, or the session stops."""
    job = session.job
    session.progress.message(
        f"worker {worker}: shard {lease.index} ({lease.rows_done:,}/{lease.rows_planned:,} rows "
        f"done), batch {sizer.size:,} rows, on {session.connection_ids.get(worker)}",
        level=2,
    )
    retries = Retries()
    started, rows = time.monotonic(), 0
    while True:
        size = await session.throttle.before_batch(sizer.size, session.stop)
        if session.stop.is_set():
            await _call(session, worker, claims.release, job.target, job.builder, lease)
            return
        if not lease.locked:
            await _call(session, worker, claims.relock, job.target, job.builder, lease)
        session.in_batch[worker] = time.monotonic()
        try:
            # The throttle's size, not the sizer's: --max-rate may cut a batch.
            result = await _in_thread(job.operation or run_batch, job, lease, size)
        except ShardLost:
            # Taken over, or our lease expired (a frozen process): hand back what is
            # still ours, so that a claimant (maybe this worker) goes on exactly.
            await _call(session, worker, claims.release, job.target, job.builder, lease)
            _lost(session, worker, lease, "lost: taken over, or its lease expired")
            return
        except DatabaseError as exc:
            if not await _after_fault(session, worker, lease, sizer, retries, exc):
                return
            continue
        finally:
            session.in_batch.pop(worker, None)
        retries.reset()
        session.throttle.after_batch(size, result.seen)
        rows += result.rows
        _record(session, worker, lease, sizer, result)
        if result.done:
            await _call(session, worker, claims.disown, job.target, job.builder, lease)
            seconds = time.monotonic() - started
            session.progress.message(
                f"worker {worker}: shard {lease.index} done, {lease.rows_done:,} rows "
                f"({rows / seconds if seconds > 0 else 0:,.0f} rows/s this session)",
                level=2,
            )
            return


def _lost(session: Session, worker: int, lease: claims.Lease, how: str) -> None:
    session.progress.message(f"worker {worker}: shard {lease.index} {how}", level=2)


def _record(
    session: Session, worker: int, lease: claims.Lease, sizer: BatchSizer, result: BatchResult
) -> None:
    """Count a committed batch and learn from its duration."""
    session.rotated += result.rows
    session.progress.advance(result.rows, skipped=result.vanished + result.kept + result.nulls)
    sizer.record(result.seen, result.seconds)
    if result.collisions:
        session.progress.message(
            f"worker {worker}: shard {lease.index}: {result.collisions:,} new values were "
            "already taken; those rows got other values",
            level=2,
        )


async def _after_fault(
    session: Session,
    worker: int,
    lease: claims.Lease,
    sizer: BatchSizer,
    retries: Retries,
    exc: DatabaseError,
) -> bool:
    """A batch rolled back on ``exc``: wait and return True to retry, False if the shard
    is no longer this worker's; raise when the fault is not a passing one."""
    job = session.job
    fault = _fault(session, exc)
    if fault is None:
        raise exc
    pause = retries.record(fault)
    if fault.kind is Kind.CONNECTION:
        await _reconnect(session, worker, fault)
        connection = session.connections.get(worker)
        if connection is None:  # stopped while reconnecting
            return False
        # The shard's lock died with the old session; the lease did not, so the shard
        # is still ours unless the batch's fence says otherwise. Lock it again.
        lease.locked = False
    elif retries.exhausted:
        raise RotatorError(
            f"{fault.what} {retries.count} times in a row on shard {lease.index} of "
            f"{job.target.label} over {retries.seconds:.0f} s; every committed batch is kept"
        ) from exc
    if fault.shrinks:
        sizer.shrink()
    session.progress.message(
        f"worker {worker}: shard {lease.index}: {fault.what}; batch rolled back, "
        f"retrying with {sizer.size:,} rows in {pause:.1f} s",
        level=2,
    )
    await _sleep(session, pause)
    return True


async def _worker(session: Session, worker: int) -> None:
    job = session.job
    owner = claims.Owner(worker=worker, session=session.name)
    # One per worker: it learns across shards.
    sizer = BatchSizer.of(session.batch_size, session.batch_seconds)
    async with ThreadSensitiveContext():
        try:
            try:
                await _in_thread(_open, session, worker)
            except DatabaseError as exc:
                fault = _fault(session, exc)
                if fault is None or fault.kind is not Kind.CONNECTION:
                    raise
                await _reconnect(session, worker, fault)
            while not session.stop.is_set():
                lease = await _call(
                    session, worker, claims.claim, job.target, job.builder, session.run_id, owner
                )
                if lease is None:
                    return
                if lease.took_over:
                    session.progress.message(
                        f"worker {worker}: took over shard {lease.index} from {lease.took_over} "
                        f"({lease.why})",
                        level=2,
                    )
                try:
                    await _work_shard(session, worker, lease, sizer)
                except BaseException:
                    with contextlib.suppress(Exception):
                        await _in_thread(claims.release, job.target, job.builder, lease)
                    raise
        except RunStopped as exc:
            session.stopped = exc
            session.stop.set()
        except Exception as exc:
            session.errors.append(exc)
            session.stop.set()
        finally:
            with contextlib.suppress(Exception):
                await _in_thread(_close, session, worker)


def _blockers(session: Session, backends: list[int]) -> dict[int, list[int]]:
    return session.job.builder.blockers(connections[session.job.target.alias], backends)


async def _watch(session: Session) -> None:
    """Say what a slow batch waits for (a lock held by whom), and keep the output alive."""
    progress, waiting = session.progress, False
    ticked = renewed = time.monotonic()
    renew_every = min(lifecycle.TICK_EVERY, claims.lease().total_seconds() / 3)
    async with ThreadSensitiveContext():
        try:
            with contextlib.suppress(DatabaseError):
                progress.message(await _in_thread(connection_line, session), level=2)
            while not session.stop.is_set():
                await _sleep(session, 1.0)
                progress.tick()
                now = time.monotonic()
                if now - ticked >= lifecycle.TICK_EVERY:
                    ticked = now
                    with contextlib.suppress(DatabaseError):
                        await _in_thread(lifecycle.tick, session.run)
                if now - renewed >= renew_every:
                    renewed = now
                    # Between batches (--max-rate sleeps, pauses) the leases still hold.
                    with contextlib.suppress(DatabaseError):
                        await _in_thread(claims.renew, session.job.target, session.name)
                slow = {
                    session.backends[w]: now - t
                    for w, t in list(session.in_batch.items())
                    if now - t > SLOW_BATCH and session.backends.get(w)
                }
                blocked: dict[int, list[int]] = {}
                if slow:
                    with contextlib.suppress(DatabaseError):
                        blocked = await _in_thread(_blockers, session, list(slow))
                if blocked:
                    pid, holders = max(blocked.items(), key=lambda item: slow.get(item[0], 0))
                    held_by = ", ".join(str(h) for h in holders)
                    progress.set_status(
                        f"waiting {slow[pid]:.0f} s on a lock held by pid {held_by}"
                    )
                    waiting = True
                elif waiting:
                    progress.set_status(None)
                    waiting = False
        finally:
            if not session.unreachable:  # a server that is gone is not waited on once more
                with contextlib.suppress(Exception):
                    await _in_thread(lifecycle.tick, session.run)
            with contextlib.suppress(Exception):
                await _in_thread(_close_own, session.job.target.alias)


def _close_own(alias: str) -> None:
    # Looked up in the calling thread: connections[alias] is per thread, and the
    # event loop's thread's connection is the command's, not the watcher's.
    connections[alias].close()


def connection_line(session: Session) -> str:
    """Which connection the run writes through (a router's replica is never it)."""
    target, builder = session.job.target, session.job.builder
    connection = connections[target.alias]
    through = ", through a pooler" if builder.pooled(connection) else ""
    return (
        f"writing through database {target.alias!r} "
        f"({builder.describe_location(connection)}{through}); "
        f"owners' liveness: {claims.liveness(builder, connection)}"
    )


async def work(session: Session, workers: int) -> None:
    """Run ``workers`` workers until no shard is left, a stop, or an error."""
    claims.LIVE_SESSIONS.add(session.name)
    alias = session.job.target.alias

    def adapt(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
        # Every connection of the run (the watcher's too), as it is made.
        if connection.alias == alias:
            session.job.builder.adapt(connection)

    connection_created.connect(adapt, weak=False)
    watcher = asyncio.ensure_future(_watch(session))
    try:
        await asyncio.gather(*(_worker(session, i) for i in range(workers)))
    finally:
        connection_created.disconnect(adapt)
        claims.LIVE_SESSIONS.discard(session.name)
        session.stop.set()
        with contextlib.suppress(Exception):
            await watcher
