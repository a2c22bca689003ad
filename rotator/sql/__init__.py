"""Per-database SQL for one batch, in one place: a builder per ``connection.vendor``.

A builder rotates the next keyset window of a shard (primary key above the
cursor, at most the shard's end, in key order, at most ``limit`` rows) and
returns ``(rows, last_key)``. It runs inside the caller's transaction and
uses the driver's cursor directly, so the new values never reach Django's
query log.

Builders are imported when a database of their vendor is used: the
PostgreSQL builder needs psycopg 3, which a project on SQLite or MySQL need
not have installed.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.errors import RotatorError
from rotator.sql.base import Builder
from rotator.sql.generic import GenericBuilder


def _postgresql() -> type[Builder]:
    try:
        from rotator.sql.postgresql import PostgreSQLBuilder
    except ImportError as exc:
        raise RotatorError(
            f"the rotator needs psycopg 3 on PostgreSQL ({exc}); "
            "install it: pip install 'psycopg[binary]'"
        ) from exc
    return PostgreSQLBuilder


def _sqlite() -> type[Builder]:
    from rotator.sql.sqlite import SQLiteBuilder

    return SQLiteBuilder


def _mysql() -> type[Builder]:
    from rotator.sql.mysql import MySQLBuilder

    return MySQLBuilder


BUILDERS: dict[str, Callable[[], type[Builder]]] = {
    "postgresql": _postgresql,
    "sqlite": _sqlite,
    "mysql": _mysql,
}


def builder_for(connection: BaseDatabaseWrapper) -> Builder:
    load = BUILDERS.get(connection.vendor)
    return load()() if load is not None else GenericBuilder()


__all__ = ["Builder", "builder_for", "BUILDERS"]
