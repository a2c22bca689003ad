"""The same task on Django's Tasks framework (``django.tasks`` in Django 6.0, the
``django-tasks`` backport before it), with whichever backend settings.TASKS names.

What a lost worker costs depends on that backend (see the README): the run's
checkpoints make a task that runs twice, or late, harmless, and the follow-up
task takes over a lost worker's shards where the backend can defer a task.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.utils import timezone
from django_tasks import default_task_backend, task

from rotator.errors import first_line
from rotator.models import Run
from rotator.service.queueing import work_run
from rotator.tasks.logged import LogSink

log = logging.getLogger("rotator.tasks")


@task()
def work(run_id: int, database: str, carried: dict[str, Any]) -> str:
    """Work run ``run_id`` until no shard is left for this task; returns one line."""
    try:
        outcome = work_run(run_id, database, carried, LogSink(log, run_id))
    except Exception as exc:
        log.error("run %s: %s: %s", run_id, type(exc).__name__, first_line(exc))
        raise
    log.info("%s", outcome.line())
    if outcome.state == Run.State.ACTIVE and outcome.reason and default_task_backend.supports_defer:
        from rotator.tasks import FOLLOW_UP

        later = timezone.now() + timedelta(seconds=FOLLOW_UP)
        work.using(run_after=later).enqueue(run_id, database, carried)
    return outcome.line()


def send(run_id: int, database: str, count: int, carried: dict[str, Any]) -> None:
    for _ in range(count):
        work.enqueue(run_id, database, carried)
