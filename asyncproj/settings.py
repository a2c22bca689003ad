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

# Connections: one per worker thread plus the command's own. The pool keeps
# them warm between batches; max_size bounds --workers (rotator checks it).
POOL_MAX_SIZE = int(os.environ.get("ROTATOR_POOL_MAX_SIZE", "34"))


def _database() -> dict:
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        return {
            "ENGINE": "asyncproj.embedded",
            "NAME": "postgres",
            "USER": "postgres",
            "PGDATA": str(BASE_DIR / ".pgdata"),
            "OPTIONS": {"pool": {"min_size": 1, "max_size": POOL_MAX_SIZE, "timeout": 30}},
        }
    db = dj_database_url.parse(url)
    if db["ENGINE"] == "django.db.backends.postgresql":
        db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": POOL_MAX_SIZE,
            "timeout": 30,
        }
    elif db["ENGINE"] == "django.db.backends.sqlite3":
        # A file (not :memory:) so that worker threads and subprocesses of the
        # test suite share one database; WAL lets readers run beside the writer.
        db["TEST"] = {"NAME": f"{db['NAME']}-test"}
        db["OPTIONS"] = {
            "timeout": 60,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    elif db["ENGINE"] == "django.db.backends.mysql":
        # READ COMMITTED: a batch locks only the rows it rotates (no gap locks
        # under REPEATABLE READ's next-key locking), as on PostgreSQL.
        db["OPTIONS"] = {
            "charset": "utf8mb4",
            "isolation_level": "read committed",
            "init_command": "SET sql_mode = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION'",
        }
        db["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
    return db


DATABASES = {"default": _database()}
if os.environ.get("ROTATOR_TEST_DB"):
    # Lets two test runs share one server without sharing a test database.
    DATABASES["default"].setdefault("TEST", {})["NAME"] = os.environ["ROTATOR_TEST_DB"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"rotator": {"handlers": ["console"], "level": "WARNING"}},
}
