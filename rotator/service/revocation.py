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

from django.db import connections

from rotator.errors import RotatorError
from rotator.generators import Generator
from rotator.models import Run
from rotator.service.options import Options
from rotator.service.preflight import check_database
from rotator.service.revoke_plan import (
    Dump,
    check_resumable,
    dry_run_lines,
    forget_ended,
    plan_or_resume,
)
from rotator.service.rotation import (
    Events,
    Quiet,
    Report,
    Stopper,
    _main,
    _reconnecting,
    raise_if_stopped,
    uvloop,
)
from rotator.sql import Builder, builder_for
from rotator.sql.revoke_base import Revoking
from rotator.store import claims, lifecycle
from rotator.target import RevokeTarget
from rotator.workers.engine import Session
from rotator.workers.revoke_batch import RevokeJob
from rotator.workers.throttle import Throttle, check_throttle_options

#: A revocation makes no values; the Job's generator slot holds this.
NO_VALUES = Generator("revoke_rows (no new values)", None)


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
        check_resumable(run, target, options.shards, dump)
    shards = options.shards or options.workers * 4
    if options.dry_run:
        return Report(
            run.pk if run else None,
            0,
            0.0,
            False,
            dry_run=dry_run_lines(target, options, run, shards, dump, builder),
        )
    run = plan_or_resume(target, run, shards, dump, builder, events)
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
        batch_seconds=options.batch_seconds,
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
    raise_if_stopped(
        session, stopper, target, run, options, builder, initial, "planned rows of {target} revoked"
    )
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
