"""Per-database SQL for one batch, in one place: a builder per ``connection.vendor``.

A builder rotates the next keyset window of a shard (primary key above the
cursor, at most the shard's end, in key order, at most ``limit`` rows) and
returns ``(rows, last_key)``. It runs inside the caller's transaction and
uses the driver's cursor directly, so the new values never reach Django's
query log.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

from .base import Builder
from .generic import GenericBuilder
from .mysql import MySQLBuilder
from .postgresql import PostgreSQLBuilder
from .sqlite import SQLiteBuilder

BUILDERS: dict[str, type[Builder]] = {
    "postgresql": PostgreSQLBuilder,
    "sqlite": SQLiteBuilder,
    "mysql": MySQLBuilder,
}


def builder_for(connection: BaseDatabaseWrapper) -> Builder:
    return BUILDERS.get(connection.vendor, GenericBuilder)()


__all__ = ["Builder", "builder_for", "BUILDERS"]
