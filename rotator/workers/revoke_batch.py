"""One revocation batch: delete the next window of planned rows and move the checkpoint,
in one transaction.

The same guarantees as a rotation batch (workers/batch.py): the shard's
cursor moves only in the transaction that deleted the rows, only while the
run is active and the shard is still this worker's; otherwise everything
rolls back. The window is a range of the plan's row numbers
(``RevocationKey.seq``), so the cursor is a row number, never a key. A
planned row the application deleted meanwhile is counted as vanished.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connections, transaction
from django.db.models import F
from django.db.models.functions import Now

from rotator.errors import RotatorError, ShardLost
from rotator.models import Shard
from rotator.sql.base import Window
from rotator.sql.revoke_base import Revoking
from rotator.store.claims import Lease
from rotator.workers.batch import IDLE_TIMEOUT, BatchResult, Job, _check_run


def revoke_batch(job: Job, lease: Lease, limit: int) -> BatchResult:
    """Delete the rows of the lease's next ``limit`` planned keys; checkpoint with them."""
    if not isinstance(job, RevokeJob):
        raise AssertionError("unreachable: revoke_batch runs RevokeJobs only")
    target, builder = job.target, job.builder
    if not isinstance(builder, Revoking):
        raise RotatorError(f"database {target.alias!r} has no revocation statements")
    started = time.perf_counter()
    window = Window(lease.cursor_text or lease.lower, lease.upper, limit)
    connection = connections[target.alias]
    with transaction.atomic(using=target.alias):
        builder.guard_transaction(connection, job.lock_timeout, IDLE_TIMEOUT)
        _check_run(job)
        outcome = builder.revoke_window(connection, target, job.snapshot, window)
        done = outcome.seen < window.limit
        cursor = outcome.last if outcome.last is not None else lease.cursor_text
        vanished = outcome.seen - outcome.rotated
        moved = (
            Shard.objects.using(target.alias)
            .filter(lease.mine(), cursor=lease.cursor_text)
            .update(
                cursor=cursor,
                rows_done=F("rows_done") + outcome.rotated,
                rows_vanished=F("rows_vanished") + vanished,
                heartbeat_at=Now(),
                state=Shard.State.DONE if done else Shard.State.RUNNING,
                finished_at=Now() if done else None,
            )
        )
        if moved != 1:
            raise ShardLost(lease.index)
        if job.hook is not None:
            job.hook(lease)
    lease.cursor_text = cursor
    lease.rows_done += outcome.rotated
    return BatchResult(
        rows=outcome.rotated,
        seen=outcome.seen,
        vanished=vanished,
        kept=0,
        nulls=0,
        done=done,
        seconds=time.perf_counter() - started,
        collisions=0,
    )


@dataclass(frozen=True)
class RevokeJob(Job):
    """A Job whose batches delete: the engine runs ``operation`` instead of run_batch."""

    #: Run.options["snapshot"]: which RevocationKey rows are the plan.
    snapshot: str = ""
    operation: Callable[[Job, Lease, int], BatchResult] | None = revoke_batch
