"""N asyncio workers, each on its own thread and database connection.

Django's async ORM sends every call through ``sync_to_async(thread_sensitive=
True)``: one thread, one connection for all coroutines, so naive "async
workers" run one at a time and interleave their transactions on a single
connection. Here each worker enters its own ``ThreadSensitiveContext``, which
gives it a thread of its own, hence a Django connection of its own and its
own transactions; the event loop only schedules, counts and reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from . import claims
from .batch import Job, run_batch
from .errors import ShardLost
from .progress import Progress
from .sizing import BatchSizer

T = TypeVar("T")


@dataclass
class Session:
    """What one invocation's workers share (all touched from the event loop only)."""

    job: Job
    run_id: int
    progress: Progress
    batch_size: int | None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    name: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    connections: dict[int, BaseDatabaseWrapper] = field(default_factory=dict)
    connection_ids: dict[int, str] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)

    def abort(self) -> None:
        """Cancel in-flight statements now; their transactions roll back."""
        self.stop.set()
        for connection in list(self.connections.values()):
            with contextlib.suppress(Exception):
                self.job.builder.interrupt(connection)


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await sync_to_async(fn, thread_sensitive=True)(*args)


def _open(session: Session, worker: int) -> None:
    connection = connections[session.job.target.alias]
    connection.ensure_connection()
    session.connections[worker] = connection
    session.connection_ids[worker] = session.job.builder.connection_id(connection)


def _close(session: Session, worker: int) -> None:
    session.connections.pop(worker, None)
    connections[session.job.target.alias].close()


async def _work_shard(session: Session, worker: int, lease: claims.Lease) -> None:
    job, progress = session.job, session.progress
    sizer = BatchSizer(fixed=session.batch_size)
    progress.message(
        f"worker {worker}: shard {lease.index} ({lease.rows_done:,}/{lease.rows_planned:,} rows "
        f"done) on {session.connection_ids[worker]}",
        level=2,
    )
    while True:
        if session.stop.is_set():
            await _in_thread(claims.release, job.target, lease)
            return
        try:
            result = await _in_thread(run_batch, job, lease, sizer.size)
        except ShardLost:
            progress.message(f"worker {worker}: shard {lease.index} taken over elsewhere", level=2)
            return
        progress.advance(result.rows)
        sizer.record(result.rows, result.seconds)
        if result.collisions:
            progress.message(
                f"worker {worker}: shard {lease.index}: new values collided with existing ones; "
                f"batch retried {result.collisions} time(s)",
                level=2,
            )
        if result.done:
            progress.message(
                f"worker {worker}: shard {lease.index} done, {lease.rows_done:,} rows", level=2
            )
            return


async def _worker(session: Session, worker: int) -> None:
    owner = claims.owner_name(session.name, worker)
    async with ThreadSensitiveContext():
        try:
            await _in_thread(_open, session, worker)
            while not session.stop.is_set():
                lease = await _in_thread(claims.claim, session.job.target, session.run_id, owner)
                if lease is None:
                    return
                try:
                    await _work_shard(session, worker, lease)
                except BaseException:
                    with contextlib.suppress(Exception):
                        await _in_thread(claims.release, session.job.target, lease)
                    raise
        except Exception as exc:
            session.errors.append(exc)
            session.stop.set()
        finally:
            with contextlib.suppress(Exception):
                await _in_thread(_close, session, worker)


async def work(session: Session, workers: int) -> None:
    """Run ``workers`` workers until no shard is left, a stop, or an error."""
    claims.LIVE_SESSIONS.add(session.name)
    try:
        await asyncio.gather(*(_worker(session, i) for i in range(workers)))
    finally:
        claims.LIVE_SESSIONS.discard(session.name)
