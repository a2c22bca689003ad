"""The Celery task: ``rotator.work_run`` works one share of a run.

``acks_late``: the message is acknowledged when the task returns, so a worker
killed mid-task (kill -9, a host gone, a deploy) leaves it to be delivered
again (``reject_on_worker_lost`` requeues it at once when the pool's child
dies; a lost node's message comes back after the broker's visibility
timeout, or on RabbitMQ when its connection closes). Redelivery is harmless:
the run's checkpoints say what is left, and a task with nothing left ends.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.utils.module_loading import import_string

from rotator.errors import first_line
from rotator.models import Run
from rotator.service.queueing import Outcome, work_run
from rotator.tasks.logged import LogSink

log = logging.getLogger("rotator.tasks")


@shared_task(
    bind=True,
    name="rotator.work_run",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def work(task: Task, run_id: int, database: str, carried: dict[str, Any]) -> str:
    """Work run ``run_id`` until no shard is left for this task; returns one line."""
    try:
        outcome = work_run(run_id, database, carried, LogSink(log, run_id))
    except Exception as exc:
        # One line (never a value); Celery records the failure and acknowledges it:
        # the run is marked errored, and resuming it enqueues again.
        log.error("run %s: %s: %s", run_id, type(exc).__name__, first_line(exc))
        raise
    log.info("%s", outcome.line())
    if follow_up(outcome):
        from rotator.tasks import FOLLOW_UP

        task.apply_async((run_id, database, carried), countdown=FOLLOW_UP)
    return outcome.line()


def follow_up(outcome: Outcome) -> bool:
    """Whether the run is still active with shards held by other tasks."""
    return outcome.state == Run.State.ACTIVE and bool(outcome.reason)


def send(run_id: int, database: str, count: int, carried: dict[str, Any]) -> None:
    # The project's app, if the settings name it (else the current one, which a project
    # that imports its app in its package __init__, as Celery's docs do, has set).
    path = getattr(settings, "ROTATOR_CELERY_APP", None)
    if path:
        import_string(path)
    for _ in range(count):
        work.apply_async((run_id, database, carried))
