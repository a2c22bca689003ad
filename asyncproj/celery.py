"""The demo project's Celery app: ``celery -A asyncproj worker``.

Settings come from Django's (``CELERY_*``, see asyncproj/settings.py); the
broker from ``CELERY_BROKER_URL`` (default: Redis at 127.0.0.1:6379/0).
``rotator.tasks`` is found by autodiscovery. The command loads this app only
for ``--enqueue`` (settings.ROTATOR_CELERY_APP), not at every start.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "asyncproj.settings")

app = Celery("asyncproj")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
