"""Rotations on the project's task queue: Celery, or Django's Tasks framework.

The queue carries only "work on run R" (and the options that pace its
batches); the database is the coordinator (claims, checkpoints), so a task
may run on any host, be delivered twice, or arrive after the run ended.
``enqueue()`` sends ``count`` such tasks with the backend named by the
``ROTATOR_TASK_BACKEND`` setting: ``"celery"`` (the default) or
``"django_tasks"``.
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Any

from django.conf import settings

from rotator.errors import RotatorError

BACKENDS = ("celery", "django_tasks")
#: The pip extra that installs each backend.
EXTRAS = {"celery": "celery", "django_tasks": "tasks"}
#: A task that ends while other tasks still hold shards sends a follow-up this many
#: seconds later: it takes over the shards of a worker lost meanwhile (a host gone)
#: without waiting for the broker to redeliver that worker's task.
FOLLOW_UP = 30.0


def backend() -> str:
    """The configured backend, checked: one line naming a bad value or a missing extra."""
    name = getattr(settings, "ROTATOR_TASK_BACKEND", "celery")
    if name not in BACKENDS:
        raise RotatorError(
            f"settings.ROTATOR_TASK_BACKEND is {name!r}; expected one of {', '.join(BACKENDS)}"
        )
    module = "celery" if name == "celery" else "django_tasks"
    if find_spec(module) is None:
        raise RotatorError(
            f"--enqueue with ROTATOR_TASK_BACKEND {name!r} needs {module!r}: "
            f"pip install 'rotator[{EXTRAS[name]}]'"
        )
    return name


def enqueue(run_id: int, database: str, count: int, carried: dict[str, Any]) -> None:
    """Send ``count`` tasks that each work run ``run_id`` until no shard is left."""
    if backend() == "celery":
        from rotator.tasks.celery_tasks import send
    else:
        from rotator.tasks.django_tasks import send
    send(run_id, database, count, carried)


# Celery's autodiscovery imports `rotator.tasks`: register the task when Celery is there.
if find_spec("celery") is not None:
    from rotator.tasks import celery_tasks  # noqa: F401
