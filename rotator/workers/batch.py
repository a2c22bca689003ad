"""One batch: new values for the next keyset window and its checkpoint, in one transaction.

Runs in a worker's own thread on that thread's own connection. The shard's
cursor only moves in the transaction that rotated the rows, only while the
run is active, and only if this worker still owns the shard and the cursor is
where it left it; otherwise everything rolls back. So a batch is applied
exactly once or not at all, whatever kills the process and whenever.

Whether the shard is done is decided by the window (fewer keys than asked
for), never by the number of rows updated: a row deleted by the application
between the window's snapshot and the UPDATE is counted as vanished, not
taken for the end of the shard.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connections, transaction
from django.db.models import F
from django.db.models.functions import Now

from rotator.errors import RotatorError, RunStopped, ShardLost
from rotator.generators import Generator, Tokens
from rotator.models import Run, Shard
from rotator.service.fingerprints import Proof
from rotator.sql import Builder
from rotator.sql.base import Fingerprinting, Outcome, Window
from rotator.store.claims import Lease, lease_end
from rotator.target import Target

#: Rounds of fresh values for rows whose new value was already taken, per batch.
MAX_ROUNDS = 20
#: The server ends a batch transaction left idle this long (a frozen process).
IDLE_TIMEOUT = 15.0


@dataclass(frozen=True)
class Job:
    target: Target
    generator: Generator
    builder: Builder
    run_id: int
    lock_timeout: float = 2.0
    fill_nulls: bool = False
    #: Called inside each batch's transaction, after the UPDATE (tests use it).
    hook: Callable[[Lease], None] | None = None
    #: What one batch does, when not run_batch() (workers/revoke_batch.py deletes).
    operation: Callable[[Job, Lease, int], BatchResult] | None = None
    #: Fingerprint each window before rotating it (None: --no-fingerprints).
    proof: Proof | None = None


@dataclass(frozen=True)
class BatchResult:
    rows: int  # rotated
    seen: int  # rows in the window
    vanished: int  # deleted by someone else before the batch reached them
    kept: int  # re-valued by someone else while the batch ran: their value stays
    nulls: int  # NULL rows left NULL
    done: bool
    seconds: float
    collisions: int  # rows that needed another new value


def tokens_for(job: Job, n: int) -> Tokens | None:
    """``n`` new values; for a unique field, distinct among themselves."""
    tokens = job.generator.tokens(n)
    if tokens is None or tokens.values is None or not job.target.unique:
        return tokens
    values = tokens.values
    try:
        distinct = set(values)
    except TypeError:  # unhashable values: the database's unique index decides
        return tokens
    for _ in range(MAX_ROUNDS):
        if len(distinct) == len(values):
            break
        seen: set[Any] = set()
        repeats = []
        for i, v in enumerate(values):
            if v in seen:
                repeats.append(i)
            seen.add(v)
        spare = job.generator.tokens(len(repeats))
        for i, value in zip(repeats, (spare.values or []) if spare else [], strict=False):
            values[i] = value
        distinct = set(values)
    return Tokens(len(values), values=values, source=tokens.source)


def _writers(job: Job) -> Fingerprinting | None:
    """Where a keys statement records its writers (the builders that record them)."""
    if job.proof is None:
        return None
    return job.proof.in_statements(job.builder, connections[job.target.alias])


def _check_run(job: Job) -> None:
    state, reason = (
        Run.objects.using(job.target.alias)
        .filter(pk=job.run_id)
        .values_list("state", "stop_reason")
        .get()
    )
    if state != Run.State.ACTIVE:
        raise RunStopped(state, reason)


def _other_values(job: Job, lease: Lease, outcome: Outcome) -> tuple[int, list[Any], int]:
    """Give the rows whose new value was taken other values, in rounds, in the batch's
    transaction; return (rows rotated in all, keys missed, rows that collided)."""
    target, builder = job.target, job.builder
    connection = connections[target.alias]
    rotated, missed, collided = outcome.rotated, list(outcome.missed), outcome.collided
    collisions = len(collided)
    for _ in range(MAX_ROUNDS):
        if not collided:
            break
        again = builder.rotate_keys(
            connection,
            target,
            collided,
            tokens_for(job, len(collided)),
            job.fill_nulls,
            fingerprints=_writers(job),
        )
        rotated += again.rotated
        missed += again.missed
        collided = again.collided
        collisions += len(collided)
    if collided:
        raise RotatorError(
            f"{len(collided):,} rows of {target.label} found no free value in {MAX_ROUNDS} "
            f"rounds of generator {job.generator.name!r} (shard {lease.index}): its values "
            "are nearly all taken; use a generator with a larger value space"
        )
    return rotated, missed, collisions


def run_batch(job: Job, lease: Lease, limit: int) -> BatchResult:
    target, builder = job.target, job.builder
    started = time.perf_counter()
    window = Window(lease.cursor_text or lease.lower, lease.upper, limit)
    tokens = tokens_for(job, builder.tokens_needed(target, window))
    connection = connections[target.alias]
    with transaction.atomic(using=target.alias):
        builder.guard_transaction(connection, job.lock_timeout, IDLE_TIMEOUT)
        _check_run(job)
        fingerprints = job.proof.write(builder, target, window) if job.proof else None
        outcome = builder.rotate(
            connection, target, window, tokens, job.fill_nulls, fingerprints=fingerprints
        )
        rotated, missed, collisions = _other_values(job, lease, outcome)
        if job.proof is not None:
            job.proof.seal(builder, target, window, outcome, whole=not missed)
        kept = builder.count_present(connection, target, missed) if missed else 0
        done = outcome.seen < window.limit and outcome.held is None
        cursor = outcome.last if outcome.last is not None else lease.cursor_text
        moved = (
            Shard.objects.using(target.alias)
            # Fenced: only the owner, from its cursor, under an unexpired lease.
            .filter(lease.mine(), cursor=lease.cursor_text, lease_until__gte=Now())
            .update(
                cursor=cursor,
                rows_done=F("rows_done") + rotated,
                rows_vanished=F("rows_vanished") + (len(missed) - kept),
                rows_kept=F("rows_kept") + kept,
                rows_null=F("rows_null") + outcome.nulls,
                heartbeat_at=Now(),
                lease_until=lease_end(),
                state=Shard.State.DONE if done else Shard.State.RUNNING,
                finished_at=Now() if done else None,
            )
        )
        if moved != 1:
            raise ShardLost(lease.index)
        if job.hook is not None:
            job.hook(lease)
    lease.cursor_text = cursor
    lease.rows_done += rotated
    return BatchResult(
        rows=rotated,
        seen=outcome.seen,
        vanished=len(missed) - kept,
        kept=kept,
        nulls=outcome.nulls,
        done=done,
        seconds=time.perf_counter() - started,
        collisions=collisions,
    )


def sweep_batch(job: Job, keys: list[str], wait: bool = False) -> tuple[int, list[str]]:
    """Rotate again ``keys``, found holding a pre-rotation value after their batch (the
    application saved an instance it had loaded before); return how many were rotated,
    and the keys left for now because another transaction holds their rows.

    The same transaction as a batch: guarded, only while the run is active, with
    other values for collisions. Their fingerprints are already kept. A row the
    application changed again meanwhile is left to the next check. A sweep never
    waits on the application while holding other rows: it locks only the rows no one
    holds (``Builder.lock_free``); ``wait``: ``keys`` is one key, waited for (up to the
    lock timeout) alone.
    """
    target, builder = job.target, job.builder
    connection = connections[target.alias]
    # The service's own connection, not a worker's: it needs the batch's session setup.
    builder.prepare_session(connection, target, f"rotator run {job.run_id} sweep")
    with transaction.atomic(using=target.alias):
        builder.guard_transaction(connection, job.lock_timeout, IDLE_TIMEOUT)
        _check_run(job)
        free = list(keys) if wait else builder.lock_free(connection, target, keys)
        rotated = 0
        if free:
            tokens = tokens_for(job, len(free))
            outcome = builder.rotate_keys(
                connection, target, free, tokens, job.fill_nulls, fingerprints=_writers(job)
            )
            rotated, _, _ = _other_values(job, _SWEEP, outcome)
    locked = set(free)
    return rotated, [key for key in keys if key not in locked]


class _Sweep:
    index = "sweep"


_SWEEP: Any = _Sweep()
