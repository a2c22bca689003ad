"""Every change of a run's state, in one place: plan, start, tick, pause, resume, cancel,
abandon, error, finish (and purge).

Each change is one conditional UPDATE (``WHERE state IN (...)``) stamped with
the database clock (``Now()``), so two processes, hosts or an operator in the
admin can race for a run and exactly one wins; the caller learns whether it
did. The workers read the state in every batch transaction (workers/batch.py),
so a pause or a cancel reaches every process within one batch.

States and transitions (after maintenance_tasks' ``Run``)::

    plan -> active --pause--> paused --resume--> active
            active --error--> errored --resume--> active
            active --finish--> finished
    active/paused/errored --cancel/abandon--> abandoned

``seconds_running`` is the time some process worked the run, by the
database clock: every live process ticks (``tick``) every few seconds and
adds the time since the last tick by anyone, unless that was longer than
``GAP`` (nobody was running: a pause, downtime). Rates and times remaining
divide by it, so they leave pauses and downtime out.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.models import F, Max, QuerySet, Sum
from django.db.models.functions import Now
from django.utils import timezone

from rotator.errors import RotatorError, first_line
from rotator.faults import Kind
from rotator.models import UNFINISHED, Fingerprint, FingerprintSet, Run, Shard
from rotator.sql import Builder
from rotator.store.planning import Plan, make_plan
from rotator.target import Target

HOST = socket.gethostname()
#: A silence between two ticks longer than this is not running time.
GAP = 30.0
#: Seconds between two ticks of one process.
TICK_EVERY = 5.0


# Reading runs.


def runs_for(target: Target) -> QuerySet[Run]:
    """Runs of the target's table and column, whichever model (proxy or not) names them."""
    return Run.objects.using(target.alias).filter(
        table=target.model._meta.db_table, column=target.run_column
    )


def active_run(target: Target) -> Run | None:
    """The unfinished (active, paused or errored) run of the target, if any."""
    return runs_for(target).filter(state__in=UNFINISHED).first()


def last_finished_run(target: Target) -> Run | None:
    return runs_for(target).filter(state=Run.State.FINISHED).order_by("-finished_at").first()


def database_now(alias: str) -> datetime:
    return Run.objects.using(alias).annotate(now=Now()).values_list("now", flat=True)[:1][0]


def tally(run: Run) -> dict[str, int]:
    """The run's counts summed over its shards: rotated, vanished, kept, null."""
    sums = run.shards.using(run._state.db).aggregate(
        rotated=Sum("rows_done"),
        vanished=Sum("rows_vanished"),
        kept=Sum("rows_kept"),
        null=Sum("rows_null"),
    )
    return {name: value or 0 for name, value in sums.items()}


def who(flag: str) -> str:
    """The operator, for stop_reason: the flag, host and pid of this command."""
    return f"{flag} from {HOST} pid {os.getpid()}"


# Changing them.


def _move(run: Run, states: tuple[str, ...], **changes: Any) -> bool:
    """Move ``run`` out of one of ``states``; True if this call moved it. Refreshes ``run``."""
    db = run._state.db
    moved = Run.objects.using(db).filter(pk=run.pk, state__in=states).update(**changes)
    run.refresh_from_db(using=db)
    return moved == 1


#: Tries of a plan that a passing fault (SQLite's "database is locked") stopped.
PLAN_TRIES = 10


def plan(
    target: Target,
    builder: Builder,
    shards: int,
    options: dict[str, Any],
    make: Callable[[Target, Builder, int], Plan] | None = None,
) -> tuple[Run | None, bool]:
    """Plan (``_plan``), again after a passing fault: planning is one transaction, so a
    lock the application's writes hold (SQLite's single writer) changed nothing."""
    for attempt in range(1, PLAN_TRIES + 1):
        try:
            return _plan(target, builder, shards, options, make)
        except DatabaseError as exc:
            fault = builder.fault(exc)
            if fault is None or fault.kind not in RETRIED or attempt == PLAN_TRIES:
                raise
            time.sleep(min(2.0, 0.1 * 2**attempt))
    raise AssertionError("unreachable")


#: Faults a plan is tried again after.
RETRIED = (Kind.LOCK, Kind.CONFLICT, Kind.TIMEOUT)


def _plan(
    target: Target,
    builder: Builder,
    shards: int,
    options: dict[str, Any],
    make: Callable[[Target, Builder, int], Plan] | None,
) -> tuple[Run | None, bool]:
    """Plan and store a new active run, or join the one another process planned meanwhile.

    Returns ``(None, False)`` for an empty table: there is nothing to rotate and
    no run is stored. A second planner waits for the first (the builder's plan
    lock) and then joins its run instead of planning again. ``make`` cuts the shards
    (default ``make_plan``; a revocation copies its keys first, in this transaction).
    """
    connection = connections[target.alias]
    try:
        with transaction.atomic(using=target.alias):
            builder.plan_lock(connection, target)
            run = active_run(target)
            if run is not None:
                return run, False
            made = (make or make_plan)(target, builder, shards)
            if made.high_water is None:
                return None, False
            run = Run.objects.using(target.alias).create(
                model=target.model_label,
                field=target.field.name,
                table=target.model._meta.db_table,
                column=target.run_column,
                database=target.alias,
                options={**options, "estimated": made.estimated},
                high_water=made.high_water,
                total_rows=made.total_rows,
            )
            Shard.objects.using(target.alias).bulk_create(
                Shard(run=run, index=s.index, lower=s.lower, upper=s.upper, rows_planned=s.rows)
                for s in made.shards
            )
    except IntegrityError:
        run = active_run(target)
        if run is None:
            raise
        return run, False
    return run, True


def start(run: Run) -> None:
    """A process begins working the run: stamp its first start and a fresh tick."""
    runs = Run.objects.using(run._state.db).filter(pk=run.pk)
    runs.filter(started_at__isnull=True).update(started_at=Now())
    runs.update(heartbeat_at=Now())
    run.refresh_from_db(using=run._state.db)


def tick(run: Run) -> None:
    """Count the time since the run's last tick (by anyone) as running time."""
    db = run._state.db
    with transaction.atomic(using=db):
        row = (
            Run.objects.using(db)
            .select_for_update()
            .filter(pk=run.pk, state=Run.State.ACTIVE)
            .annotate(now=Now())
            .values_list("heartbeat_at", "now")
            .first()
        )
        if row is None:
            return
        then, now = row
        gap = (now - then).total_seconds() if then is not None else GAP + 1
        add = gap if 0 <= gap <= GAP else 0.0
        Run.objects.using(db).filter(pk=run.pk).update(
            seconds_running=F("seconds_running") + add, heartbeat_at=Now()
        )


def pause(run: Run, by: str) -> bool:
    """Pause an active run; ``by`` (who did it) is its stop_reason, shown by the engine."""
    return _move(run, (Run.State.ACTIVE,), state=Run.State.PAUSED, stop_reason=by[:200])


def resume(run: Run) -> bool:
    """Make a paused or errored run active again (its workers start when run again)."""
    return _move(
        run,
        (Run.State.PAUSED, Run.State.ERRORED),
        state=Run.State.ACTIVE,
        stop_reason="",
        error_class="",
        error_message="",
    )


def abandon(run: Run, reason: str = "") -> bool:
    """Give the run up (--restart): nothing rotated is undone; no worker takes it again."""
    return _move(
        run, UNFINISHED, state=Run.State.ABANDONED, stop_reason=reason[:200], finished_at=Now()
    )


def cancel(run: Run, by: str) -> bool:
    return abandon(run, f"cancelled: {by}")


def error(run: Run, exc: BaseException) -> bool:
    """The run stopped on an error its workers cannot get past; resuming clears it."""
    return _move(
        run,
        (Run.State.ACTIVE,),
        state=Run.State.ERRORED,
        error_class=type(exc).__name__[:200],
        error_message=first_line(exc)[:500],
    )


def all_done(run: Run) -> bool:
    """Whether every shard of the run is done."""
    db = run._state.db
    return not Shard.objects.using(db).filter(run=run).exclude(state=Shard.State.DONE).exists()


def seconds_since_last_batch(run: Run) -> float:
    """Seconds, by the database clock, since the run's last shard finished (by anyone)."""
    db = run._state.db
    last = Shard.objects.using(db).filter(run=run).aggregate(last=Max("finished_at"))["last"]
    if last is None:
        return 0.0
    return max(0.0, (database_now(db or "default") - last).total_seconds())


def count_swept(run: Run, rows: int) -> None:
    """Add ``rows`` to the rows the run's checks found written back and rotated again."""
    if not rows:
        return
    db = run._state.db
    with transaction.atomic(using=db):
        locked = Run.objects.using(db).select_for_update().filter(pk=run.pk).first()
        if locked is None:
            return
        options = {**locked.options, "swept": int(locked.options.get("swept", 0)) + rows}
        Run.objects.using(db).filter(pk=run.pk).update(options=options)
    run.refresh_from_db(using=db)


def finish(run: Run) -> bool:
    """Finish the run if every shard is done; True if it is finished.

    The service calls it only once a check of the table found no pre-rotation
    value left (service/finishing.py), or for a run without fingerprints.
    """
    if not all_done(run):
        return False
    # The plan's total may be an estimate (PostgreSQL's statistics above 1M rows): a
    # finished run shows the exact count of its rows, by fate, which add up.
    # (An exact plan keeps its total: rows deleted before their batch are told apart.)
    exact: dict[str, Any] = {}
    if run.options.get("estimated"):
        exact = {
            "total_rows": sum(tally(run).values()),
            "options": {**run.options, "estimated": False},
        }
    _move(run, (Run.State.ACTIVE,), state=Run.State.FINISHED, finished_at=Now(), **exact)
    return run.state == Run.State.FINISHED


# The operator's changes, by target.


def unfinished(target: Target, flag: str) -> Run:
    run = active_run(target)
    if run is None:
        last = runs_for(target).order_by("-pk").first()
        since = f" (its last run, {last.pk}, is {last.state})" if last else ""
        raise RotatorError(
            f"{target.label} has no unfinished run to {flag}{since}; see them all with --status"
        )
    return run


def pause_target(target: Target) -> Run:
    run = unfinished(target, "pause")
    if run.state == Run.State.PAUSED:
        raise RotatorError(
            f"run {run.pk} of {target.label} is already paused; run the command to resume it"
        )
    if not pause(run, who("--pause")):
        raise RotatorError(f"run {run.pk} of {target.label} changed state; see --status")
    return run


def cancel_target(target: Target) -> Run:
    run = unfinished(target, "cancel")
    if not cancel(run, who("--cancel")):
        raise RotatorError(f"run {run.pk} of {target.label} changed state; see --status")
    return run


def purge(target: Target, older_than_days: float) -> tuple[int, int]:
    """Delete finished and abandoned runs (with shards and fingerprints) older than N days.

    Returns (runs, fingerprints) deleted. Unfinished runs are never purged.
    """
    if older_than_days < 0:
        raise RotatorError(f"--purge needs a number of days >= 0, got {older_than_days!r}")
    # created_at is stamped by Django (auto_now_add works on Django 4.2, db_default does not).
    cutoff = timezone.now() - timedelta(days=older_than_days)
    old = runs_for(target).exclude(state__in=UNFINISHED).filter(created_at__lte=cutoff)
    # A run whose fingerprints prove a run that stays (--restart keeps the proof) stays too.
    kept = runs_for(target).exclude(pk__in=old.values("pk"))
    proofs = {run.options.get("proof") for run in kept.only("options")} - {None}
    old = old.exclude(pk__in=proofs)
    with transaction.atomic(using=target.alias):
        sets = FingerprintSet.objects.using(target.alias).filter(run__in=old)
        batched = sets.aggregate(n=Sum("size"))["n"] or 0
        _, deleted = old.delete()
    return deleted.get(Run._meta.label, 0), deleted.get(Fingerprint._meta.label, 0) + batched
