"""Checks made before anything changes: options, migrations, connection pool size."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from .errors import RotatorError

if TYPE_CHECKING:
    from .runner import Options


def check_options(options: Options) -> None:
    if options.workers < 1:
        raise RotatorError(f"--workers must be at least 1, got {options.workers!r}")
    if options.batch_size is not None and options.batch_size < 1:
        raise RotatorError(f"--batch-size must be at least 1, got {options.batch_size!r}")
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
        if workers + 1 > size:
            raise RotatorError(
                f"--workers {workers} needs {workers + 1} connections but the pool of database "
                f"{alias!r} holds at most {size}; lower --workers or raise "
                "OPTIONS['pool']['max_size']"
            )
