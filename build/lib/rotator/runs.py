"""Find, create, resume and close rotation runs (the rows in rotator_run)."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from .errors import RotatorError
from .models import Run, Shard
from .plan import Plan
from .target import Target


def runs_for(target: Target) -> Any:
    return Run.objects.using(target.alias).filter(model=target.model_label, field=target.field.name)


def active_run(target: Target) -> Run | None:
    return runs_for(target).filter(state=Run.State.ACTIVE).first()


def last_finished_run(target: Target) -> Run | None:
    return runs_for(target).filter(state=Run.State.FINISHED).order_by("-finished_at").first()


def abandon(run: Run) -> None:
    Run.objects.using(run._state.db).filter(pk=run.pk, state=Run.State.ACTIVE).update(
        state=Run.State.ABANDONED, finished_at=timezone.now()
    )


def create_run(target: Target, plan: Plan, options: dict[str, Any]) -> tuple[Run, bool]:
    """Store ``plan`` as the active run; if another process won the race, join its run."""
    try:
        with transaction.atomic(using=target.alias):
            run = Run.objects.using(target.alias).create(
                model=target.model_label,
                field=target.field.name,
                database=target.alias,
                options=options,
                high_water=None if plan.high_water is None else target.key_to_text(plan.high_water),
                total_rows=plan.total_rows,
            )
            Shard.objects.using(target.alias).bulk_create(
                Shard(
                    run=run,
                    index=s.index,
                    lower=None if s.lower is None else target.key_to_text(s.lower),
                    upper=target.key_to_text(s.upper),
                    rows_planned=s.rows,
                )
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
