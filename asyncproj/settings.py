"""Settings for the rotator demo project.

DATABASE_URL picks the database (postgres://..., mysql://..., sqlite:///...). Unset, the
project uses an embedded PostgreSQL (the ``pgserver`` wheel) whose data lives
in ``.pgdata/`` and which is started on first connection and stopped when the
last process using it exits.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
import django
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "rotator-demo-not-secret")
DEBUG = False
ALLOWED_HOSTS: list[str] = ["localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "rotator",
    "tickets",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "asyncproj.urls"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Connections: one per worker thread, one for the command, one for the lock-wait watcher.
# The pool keeps them warm between batches; max_size bounds --workers (rotator checks it).
POOL_MAX_SIZE = int(os.environ.get("ROTATOR_POOL_MAX_SIZE", "34"))
# A wrong address or a server that went down fails in seconds with its own
# cause (the command probes the server once, directly), not after 30 s of
# pool retries. Pools need Django 5.1+; the app itself supports 4.2.
CONNECT_TIMEOUT = 3
POOL_TIMEOUT = 5
POOLING = django.VERSION >= (5, 1)


def _pool() -> dict:
    return {"min_size": 1, "max_size": POOL_MAX_SIZE, "timeout": POOL_TIMEOUT}


def _redacted(url: str) -> str:
    """The URL without its password, fit for an error message."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if sep and at and ":" in userinfo:
        return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"
    return url


def _parse(url: str) -> dict:
    expected = (
        "expected postgres://user@host:port/name, mysql://user@host:port/name or sqlite:///path"
    )
    try:
        db = dj_database_url.parse(url)
    except ValueError as exc:
        reason = str(exc).split(".")[0]
        raise ImproperlyConfigured(
            f"DATABASE_URL {_redacted(url)!r} is not a database URL ({reason}); {expected}"
        ) from None
    if not db.get("NAME"):
        raise ImproperlyConfigured(f"DATABASE_URL {_redacted(url)!r} names no database; {expected}")
    return dict(db)


def _database() -> dict:
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        return {
            "ENGINE": "asyncproj.embedded",
            "NAME": "postgres",
            "USER": "postgres",
            "PGDATA": str(BASE_DIR / ".pgdata"),
            "OPTIONS": {"pool": _pool()} if POOLING else {},
        }
    db = _parse(url)
    if db["ENGINE"] == "django.db.backends.postgresql":
        db.setdefault("OPTIONS", {})["connect_timeout"] = CONNECT_TIMEOUT
        if POOLING:
            db["OPTIONS"]["pool"] = _pool()
    elif db["ENGINE"] == "django.db.backends.sqlite3":
        # A file (not :memory:) so that worker threads and subprocesses of the
        # test suite share one database; WAL lets readers run beside the writer.
        db["TEST"] = {"NAME": f"{db['NAME']}-test"}
        db["OPTIONS"] = {
            "timeout": 60,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        if django.VERSION < (5, 1):  # neither option exists before Django 5.1
            del db["OPTIONS"]["transaction_mode"], db["OPTIONS"]["init_command"]
    elif db["ENGINE"] == "django.db.backends.mysql":
        # READ COMMITTED: a batch locks only the rows it rotates (no gap locks
        # under REPEATABLE READ's next-key locking), as on PostgreSQL.
        db["OPTIONS"] = {
            "charset": "utf8mb4",
            "isolation_level": "read committed",
            "init_command": "SET sql_mode = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION'",
        }
        db["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
    return dict(db)


DATABASES = {"default": _database()}
if os.environ.get("ROTATOR_TEST_DB"):
    # Lets two test runs share one server without sharing a test database.
    DATABASES["default"].setdefault("TEST", {})["NAME"] = os.environ["ROTATOR_TEST_DB"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "rotator": {"handlers": ["console"], "level": "WARNING"},
        # The pool logs every failed attempt; the command's last line gives the cause.
        "psycopg.pool": {"level": "ERROR"},
    },
}

# Liveness of shard owners (README "Behind a connection pooler"): "auto" takes
# session locks only on direct connections; a frozen owner loses its shards after
# the lease (seconds, on the database clock).
ROTATOR_LIVENESS = os.environ.get("ROTATOR_LIVENESS", "auto")
ROTATOR_LEASE_SECONDS = float(os.environ.get("ROTATOR_LEASE_SECONDS", "60"))
# How long a finished run waits for saves of instances loaded before their batch
# (README "Proving it"); unset: rotator's default (30 s).
if os.environ.get("ROTATOR_SETTLE_SECONDS"):
    ROTATOR_SETTLE_SECONDS = float(os.environ["ROTATOR_SETTLE_SECONDS"])

# The Django admin (rotator/admin.py: runs, progress, pause/resume/cancel).
# `python manage.py createsuperuser`, then `python manage.py runserver --insecure`
# (--insecure serves the admin's CSS while DEBUG is off) and open /admin/.
INSTALLED_APPS += [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]
MIDDLEWARE += [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / ".data" / "static"

# Rotations on the task queue (`--enqueue`, the admin's Start and Resume): Celery
# (`celery -A asyncproj worker`) or Django's Tasks framework (settings.TASKS).
ROTATOR_TASK_BACKEND = os.environ.get("ROTATOR_TASK_BACKEND", "celery")
# The Celery app --enqueue sends with, loaded only then (importing Celery takes
# a second or more, which every other manage.py command would pay).
ROTATOR_CELERY_APP = "asyncproj.celery.app"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
# The queue carries "work on run R"; the database holds the results (the run itself).
CELERY_TASK_IGNORE_RESULT = True
# A rotation task runs for minutes to hours: a worker takes one at a time, so that
# the other tasks go to idle workers, and acknowledges it when it ends (acks_late
# on the task), so a lost worker's task is delivered again.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Redis redelivers an unacknowledged task of a lost worker node after this many
# seconds (meanwhile the follow-up tasks of rotator/tasks take over its shards); a
# task running longer is delivered again too, which is harmless (the duplicate works
# shards nobody holds, or ends). RabbitMQ redelivers when the lost node's connection
# closes.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600"))
}
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Fields the admin may start a rotation of (rotator/admin_control.py).
ROTATOR_TARGETS = ["tickets.Ticket.token"]
# What each task did (one line when it ends) in the worker's log.
LOGGING["loggers"]["rotator.tasks"] = {"level": "INFO"}  # type: ignore[index]
