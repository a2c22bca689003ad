"""SQLite: one writer, no network; read the window's keys, then executemany."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from ..generators import Generator, Tokens
from ..target import Target
from .base import Builder


class SQLiteBuilder(Builder):
    vendor = "sqlite"
    concurrent_writers = False

    def sql(self, connection: BaseDatabaseWrapper, target: Target, lower: bool) -> tuple[str, str]:
        qn = connection.ops.quote_name
        pk, table, col = (
            qn(target.pk.column),
            qn(target.model._meta.db_table),
            qn(target.field.column),
        )
        where = f"{pk} > ? AND {pk} <= ?" if lower else f"{pk} <= ?"
        select = f"SELECT {pk} FROM {table} WHERE {where} ORDER BY {pk} LIMIT ?"
        update = f"UPDATE {table} SET {col} = ? WHERE {pk} = ?"
        return select, update

    def rotate(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        lo: Any,
        hi: Any,
        limit: int,
        tokens: Tokens | None,
    ) -> tuple[int, Any]:
        if tokens is None:
            raise AssertionError("unreachable: supports() refuses server-side generators")
        select, update = self.sql(connection, target, lower=lo is not None)
        bounds = [self.prep_key(connection, target, hi), limit]
        if lo is not None:
            bounds.insert(0, self.prep_key(connection, target, lo))
        values = self.prep_values(connection, target, tokens)
        with (
            connection.wrap_database_errors,
            contextlib.closing(connection.connection.cursor()) as cur,
        ):
            cur.execute(select, bounds)
            keys = [row[0] for row in cur.fetchall()]
            cur.executemany(update, zip(values, keys, strict=False))
        return len(keys), (keys[-1] if keys else None)

    def describe(self, connection: BaseDatabaseWrapper, target: Target, gen: Generator) -> str:
        select, update = self.sql(connection, target, lower=True)
        return f"{select};\n{update};  -- executemany, one row per key"

    def connection_id(self, connection: BaseDatabaseWrapper) -> str:
        return f"sqlite:{id(connection.connection):x}"

    def interrupt(self, connection: BaseDatabaseWrapper) -> None:
        raw = connection.connection
        if raw is not None:
            raw.interrupt()

    def is_unique_violation(self, exc: BaseException) -> bool:
        cause = exc.__cause__ or exc
        return isinstance(cause, sqlite3.IntegrityError) and "UNIQUE" in str(cause)
