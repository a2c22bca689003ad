"""The demo project; its Celery app is loaded with it (when Celery is installed), so
that ``--enqueue`` sends to the configured broker."""

from __future__ import annotations

try:
    from asyncproj.celery import app as celery_app
except ModuleNotFoundError as exc:  # the `celery` extra is optional
    if exc.name != "celery":
        raise
    celery_app = None

__all__ = ["celery_app"]
