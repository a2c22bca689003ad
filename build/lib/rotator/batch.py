"""One batch: new values for the next keyset window and its checkpoint, in one transaction.

Runs in a worker's own thread on that thread's own connection. The shard's
cursor only moves in the transaction that rotated the rows, and only if this
worker still owns the shard and the cursor is where it left it; otherwise
everything rolls back. So a batch is applied exactly once or not at all,
whatever kills the process and whenever.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import IntegrityError, connections, transaction
from django.db.models import F
from django.utils import timezone

from .claims import Lease
from .errors import RotatorError, ShardLost
from .generators import Generator
from .models import Shard
from .sql import Builder
from .target import Target

MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Job:
    target: Target
    generator: Generator
    builder: Builder
    #: Called inside each batch's transaction, after the UPDATE (tests use it).
    hook: Callable[[Lease], None] | None = None


@dataclass(frozen=True)
class BatchResult:
    rows: int
    done: bool
    seconds: float
    collisions: int


def run_batch(job: Job, lease: Lease, limit: int) -> BatchResult:
    target = job.target
    started = time.perf_counter()
    for attempt in range(MAX_ATTEMPTS):
        try:
            rows, done = _apply(job, lease, limit)
        except IntegrityError as exc:
            if not job.builder.is_unique_violation(exc):
                raise
            continue
        return BatchResult(rows, done, time.perf_counter() - started, attempt)
    raise RotatorError(
        f"new values for {target.label} collided with existing ones {MAX_ATTEMPTS} times in a "
        f"row (shard {lease.index}); check that generator {job.generator.name!r} makes unique "
        "values, then run the command again to resume"
    )


def _apply(job: Job, lease: Lease, limit: int) -> tuple[int, bool]:
    target = job.target
    tokens = job.generator.tokens(limit)
    with transaction.atomic(using=target.alias):
        connection = connections[target.alias]
        rows, last = job.builder.rotate(connection, target, lease.start, lease.upper, limit, tokens)
        done = rows < limit
        cursor = lease.cursor if last is None else target.pk.to_python(last)
        cursor_text = lease.cursor_text if last is None else target.key_to_text(cursor)
        now = timezone.now()
        moved = (
            Shard.objects.using(target.alias)
            .filter(pk=lease.shard_id, owner=lease.owner, cursor=lease.cursor_text)
            .update(
                cursor=cursor_text,
                rows_done=F("rows_done") + rows,
                heartbeat_at=now,
                state=Shard.State.DONE if done else Shard.State.RUNNING,
                finished_at=now if done else None,
            )
        )
        if moved != 1:
            raise ShardLost(lease.index)
        if job.hook is not None:
            job.hook(lease)
    lease.cursor, lease.cursor_text = cursor, cursor_text
    lease.rows_done += rows
    return rows, done
