"""Find, create, resume and close rotation runs (the rows in rotator_run)."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import Sum
from django.db.models.functions import Now
from django.utils import timezone

from rotator.errors import RotatorError
from rotator.models import UNFINISHED, Run, Shard
from rotator.service.target import Target
from rotator.sql import Builder
from rotator.store.planning import make_plan


def runs_for(target: Target) -> Any:
    """Runs of the target's table and column, whichever model (proxy or not) names them."""
    return Run.objects.using(target.alias).filter(
        table=target.model._meta.db_table, column=target.field.column
    )


def active_run(target: Target) -> Run | None:
    """The unfinished (active or paused) run of the target, if any."""
    return runs_for(target).filter(state__in=UNFINISHED).first()


def last_finished_run(target: Target) -> Run | None:
    return runs_for(target).filter(state=Run.State.FINISHED).order_by("-finished_at").first()


def abandon(run: Run, reason: str = "") -> None:
    Run.objects.using(run._state.db).filter(pk=run.pk, state__in=UNFINISHED).update(
        state=Run.State.ABANDONED, stop_reason=reason, finished_at=Now()
    )


def plan_run(
    target: Target, builder: Builder, shards: int, options: dict[str, Any]
) -> tuple[Run | None, bool]:
    """Plan and store a new active run, or join the one another process planned meanwhile.

    Returns ``(None, False)`` for an empty table: there is nothing to rotate and
    no run is stored. A second planner waits for the first (the builder's plan
    lock) and then joins its run instead of planning again.
    """
    connection = connections[target.alias]
    try:
        with transaction.atomic(using=target.alias):
            builder.plan_lock(connection, target)
            run = active_run(target)
            if run is not None:
                return run, False
            plan = make_plan(target, builder, shards)
            if plan.high_water is None:
                return None, False
            run = Run.objects.using(target.alias).create(
                model=target.model_label,
                field=target.field.name,
                table=target.model._meta.db_table,
                column=target.field.column,
                database=target.alias,
                options={**options, "estimated": plan.estimated},
                high_water=plan.high_water,
                total_rows=plan.total_rows,
            )
            Shard.objects.using(target.alias).bulk_create(
                Shard(run=run, index=s.index, lower=s.lower, upper=s.upper, rows_planned=s.rows)
                for s in plan.shards
            )
    except IntegrityError:
        run = active_run(target)
        if run is None:
            raise
        return run, False
    return run, True


def mark_started(run: Run) -> None:
    now = timezone.now()
    Run.objects.using(run._state.db).filter(pk=run.pk, started_at__isnull=True).update(
        started_at=now
    )
    Run.objects.using(run._state.db).filter(pk=run.pk).update(heartbeat_at=now)


def resume_paused(run: Run) -> bool:
    """Make a paused run active again; True if it was paused."""
    resumed = (
        Run.objects.using(run._state.db)
        .filter(pk=run.pk, state=Run.State.PAUSED)
        .update(state=Run.State.ACTIVE, stop_reason="")
    )
    run.refresh_from_db(using=run._state.db)
    return bool(resumed)


def tally(run: Run) -> dict[str, int]:
    """The run's counts summed over its shards: rotated, vanished, kept, null."""
    sums = run.shards.aggregate(
        rotated=Sum("rows_done"),
        vanished=Sum("rows_vanished"),
        kept=Sum("rows_kept"),
        null=Sum("rows_null"),
    )
    return {name: value or 0 for name, value in sums.items()}


def finish_if_complete(run: Run) -> bool:
    db = run._state.db
    if Shard.objects.using(db).filter(run=run).exclude(state=Shard.State.DONE).exists():
        return False
    Run.objects.using(db).filter(pk=run.pk, state=Run.State.ACTIVE).update(
        state=Run.State.FINISHED, finished_at=timezone.now()
    )
    run.refresh_from_db(using=db)
    return run.state == Run.State.FINISHED


def describe_finished(run: Run, target: Target) -> str:
    when = run.finished_at.strftime("%Y-%m-%d %H:%M:%S %Z") if run.finished_at else "?"
    return (
        f"{target.label} was fully rotated by run {run.pk} (finished {when}); "
        "pass --restart to rotate every row again"
    )


def check_resumable(run: Run, shards: int | None) -> None:
    planned = run.shards.count()
    if shards is not None and shards != planned and planned:
        raise RotatorError(
            f"--shards {shards} does not match run {run.pk}, planned with {planned} shards; "
            "resume without --shards, or pass --restart to plan again"
        )
