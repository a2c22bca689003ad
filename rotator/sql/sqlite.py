"""SQLite: one writer, no network, no server log: read the window, then executemany.

The window's keys and old values are read raw (the database's own values, so
a cursor compares exactly whatever the time zone); new values already taken
are found with one ``IN`` query per chunk, and those rows get other values.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.faults import Fault, Kind
from rotator.generators import Generator, Tokens
from rotator.sql.base import Builder, Fingerprinting, Outcome, Split, Window, positions, sizes_of
from rotator.sql.digests import DIGEST_BYTES, Digests, keyed_digest, sha256_of, value_text
from rotator.sql.names import Names
from rotator.sql.revoke_sqlite import RevokeSQLite
from rotator.target import Target

#: SQLite's default limit of bound variables is 32,766; stay well below.
CHUNK = 500


class SQLiteBuilder(RevokeSQLite, Builder):
    vendor = "sqlite"
    concurrent_writers = False
    enforces_length = False
    hashes_on_server = True
    param = "?"
    temporary = "TEMP TABLE"

    def sql(self, connection: BaseDatabaseWrapper, target: Target, lower: bool) -> tuple[str, str]:
        n = Names.of(connection, target)
        pk, table, col = n.pk, n.table, n.col
        where = f"{pk} > ? AND {pk} <= ?" if lower else f"{pk} <= ?"
        select = (
            f"SELECT {pk}, {col} IS NULL, {col} FROM {table} WHERE {where} ORDER BY {pk} LIMIT ?"
        )
        update = f"UPDATE {table} SET {col} = ? WHERE {pk} = ?"
        return select, update

    def _apply(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        cur: sqlite3.Cursor,
        window: list[tuple[Any, ...]],
        tokens: Tokens,
        fill_nulls: bool,
    ) -> Outcome:
        _, update = self.sql(connection, target, lower=False)
        keys = [key for key, is_null, *_ in window if fill_nulls or not is_null]
        old = {row[0]: row[2] for row in window}
        values = self.prep_values(connection, target, tokens)[: len(keys)]
        taken = self._taken(connection, target, cur, values) if target.unique else set()
        pairs, collided, seen_values = [], [], set()
        for key, value in zip(keys, values, strict=True):
            marker = value if isinstance(value, str | bytes | int) else repr(value)
            # A value equal to the row's old one is no rotation: it draws again.
            same = value == old.get(key)
            if same or marker in taken or (target.unique and marker in seen_values):
                collided.append(key)
                continue
            seen_values.add(marker)
            pairs.append((value, key))
        cur.executemany(update, pairs)
        return Outcome(
            seen=len(window),
            last=None if not window else str(window[-1][0]),
            rotated=len(pairs),
            nulls=len(window) - len(keys),
            collided=collided,
        )

    @staticmethod
    def _taken(
        connection: BaseDatabaseWrapper, target: Target, cur: sqlite3.Cursor, values: list[Any]
    ) -> set[Any]:
        n = Names.of(connection, target)
        col, table = n.col, n.table
        taken: set[Any] = set()
        for start in range(0, len(values), CHUNK):
            chunk = values[start : start + CHUNK]
            marks = ", ".join("?" * len(chunk))
            cur.execute(f"SELECT {col} FROM {table} WHERE {col} IN ({marks})", chunk)
            taken.update(
                v if isinstance(v, str | bytes | int) else repr(v) for (v,) in cur.fetchall()
            )
        return taken

    def rotate(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        window: Window,
        tokens: Tokens | None,
        fill_nulls: bool,
        fingerprints: Fingerprinting | None = None,
    ) -> Outcome:
        if tokens is None:
            raise AssertionError("unreachable: supports() refuses server-side generators")
        select, _ = self.sql(connection, target, lower=window.lo is not None)
        bounds: list[Any] = [window.hi, window.limit]
        if window.lo is not None:
            bounds.insert(0, window.lo)
        with (
            connection.wrap_database_errors,
            contextlib.closing(connection.connection.cursor()) as cur,
        ):
            cur.execute(select, bounds)
            rows = cur.fetchall()
            return self._apply(connection, target, cur, rows, tokens, fill_nulls)

    def rotate_keys(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        keys: list[Any],
        tokens: Tokens | None,
        fill_nulls: bool,
        fingerprints: Fingerprinting | None = None,
    ) -> Outcome:
        if tokens is None:
            raise AssertionError("unreachable: supports() refuses server-side generators")
        n = Names.of(connection, target)
        pk, col, table = n.pk, n.col, n.table
        marks = ", ".join("?" * len(keys))
        with (
            connection.wrap_database_errors,
            contextlib.closing(connection.connection.cursor()) as cur,
        ):
            cur.execute(
                f"SELECT {pk}, {col} IS NULL, {col} FROM {table} WHERE {pk} IN ({marks}) "
                f"ORDER BY {pk}",
                keys,
            )
            rows = cur.fetchall()
            return self._apply(connection, target, cur, rows, tokens, fill_nulls)

    def split(self, connection: BaseDatabaseWrapper, target: Target, shards: int) -> Split:
        # Runs inside the planning transaction, so the count and the walk agree.
        n = Names.of(connection, target)
        pk, table = n.pk, n.table
        with contextlib.closing(connection.connection.cursor()) as cur:
            cur.execute(f"SELECT {pk} FROM {table} ORDER BY {pk} DESC LIMIT 1")
            row = cur.fetchone()
            if row is None:
                return Split(None, 0, [], [])
            high = row[0]
            cur.execute(f"SELECT count(*) FROM {table} WHERE {pk} <= ?", [high])
            ends = positions(cur.fetchone()[0], shards)
            uppers: list[str] = []
            for end in ends[:-1]:
                cur.execute(
                    f"SELECT {pk} FROM {table} WHERE {pk} <= ? ORDER BY {pk} LIMIT 1 OFFSET ?",
                    [high, end - 1],
                )
                uppers.append(str(cur.fetchone()[0]))
        return Split(str(high), ends[-1], [*uppers, str(high)], sizes_of(ends))

    def describe(self, connection: BaseDatabaseWrapper, target: Target, gen: Generator) -> str:
        select, update = self.sql(connection, target, lower=True)
        return f"{select};\n{update};  -- executemany, one row per key"

    def fault(self, exc: BaseException) -> Fault | None:
        cause = exc.__cause__ or exc
        busy = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
        if isinstance(cause, sqlite3.OperationalError) and cause.sqlite_errorcode in busy:
            return Fault(Kind.LOCK, "the database was locked by another writer")
        return None

    def connection_id(self, connection: BaseDatabaseWrapper) -> str:
        return f"sqlite:{id(connection.connection):x}"

    def interrupt(self, connection: BaseDatabaseWrapper) -> None:
        raw = connection.connection
        if raw is not None:
            raw.interrupt()

    # Hashing on the server: Python functions registered on the connection.

    def digests(self, connection: BaseDatabaseWrapper, target: Target, alias: str = "") -> Digests:
        register_digests(connection, target)
        n = Names.of(connection, target)
        return Digests(
            key_text=f"CAST({alias}{n.pk} AS TEXT)",
            digest=f"rotator_digest({alias}{n.col})",
            sha256=f"rotator_sha256({alias}{n.col})",
            param="?",
        )

    # The proof: the key lives in a Python function of this connection (no server log).

    def load_proof_key(
        self, connection: BaseDatabaseWrapper, target: Target, key: str, batches: bool = False
    ) -> None:
        connection.ensure_connection()
        field = target.field

        def proof(value: Any) -> int | None:
            return None if value is None else keyed_digest(key, value_text(field, value))

        connection.connection.create_function("rotator_proof", 1, proof, deterministic=True)

    def proof_digest(self, connection: BaseDatabaseWrapper, target: Target, alias: str) -> str:
        return f"rotator_proof({alias}{Names.of(connection, target).col})"

    def describe_location(self, connection: BaseDatabaseWrapper) -> str:
        return str(connection.settings_dict.get("NAME"))


def register_digests(connection: BaseDatabaseWrapper, target: Target) -> None:
    """Register rotator_digest() and rotator_sha256() for ``target``'s field."""
    connection.ensure_connection()
    field = target.field

    def full(value: Any) -> bytes | None:
        return None if value is None else sha256_of(value_text(field, value))

    def digest(value: Any) -> bytes | None:
        hashed = full(value)
        return None if hashed is None else hashed[:DIGEST_BYTES]

    raw = connection.connection
    raw.create_function("rotator_digest", 1, digest, deterministic=True)
    raw.create_function("rotator_sha256", 1, full, deterministic=True)
