"""Checks made before anything changes: options, migrations, connection pool size."""

from __future__ import annotations

from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from rotator.errors import RotatorError
from rotator.service.options import Options

#: Rows of one batch at most: its new values are held in memory at once.
MAX_BATCH_SIZE = 100_000


def check_options(options: Options) -> None:
    if options.workers < 1:
        raise RotatorError(f"--workers must be at least 1, got {options.workers!r}")
    if options.batch_size is not None and not 1 <= options.batch_size <= MAX_BATCH_SIZE:
        raise RotatorError(
            f"--batch-size must be from 1 to {MAX_BATCH_SIZE:,}, got {options.batch_size!r}"
        )
    if options.lock_timeout <= 0:
        raise RotatorError(
            f"--lock-timeout must be more than 0 seconds, got {options.lock_timeout!r}"
        )
    if options.reconnect_timeout < 0:
        raise RotatorError(
            f"--reconnect-timeout must be 0 seconds or more, got {options.reconnect_timeout!r}"
        )
    if options.shards is not None and options.shards < 1:
        raise RotatorError(f"--shards must be at least 1, got {options.shards!r}")


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
