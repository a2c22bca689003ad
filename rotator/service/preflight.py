"""Checks of the database made before anything changes: migrations, connection pool size."""

from __future__ import annotations

from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from rotator.errors import RotatorError


def check_database(alias: str, workers: int) -> None:
    connection = connections[alias]
    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in pending[:3])
        more = f" and {len(pending) - 3} more" if len(pending) > 3 else ""
        raise RotatorError(
            f"database {alias!r} has unapplied migrations ({names}{more}); "
            f"run: python manage.py migrate --database {alias}"
        )
    pool = connection.settings_dict.get("OPTIONS", {}).get("pool")
    if pool:
        size = pool.get("max_size") or pool.get("min_size", 4) if isinstance(pool, dict) else 4
        # One per worker, one for the command, one for the lock-wait watcher.
        if workers + 2 > size:
            raise RotatorError(
                f"--workers {workers} needs {workers + 2} connections but the pool of database "
                f"{alias!r} holds at most {size}; lower --workers or raise "
                "OPTIONS['pool']['max_size']"
            )
