"""One MariaDB/MySQL batch: placeholders for keys only, never a value in SQL text.

Two session temporary tables per target: the window (``rn``, key, old value,
new value, whether that value is taken) and the loaded values (``rn``, value).
A batch first copies its keyset window (keys and old values, numbered) into
the window table, a plain read at READ COMMITTED that locks nothing; then one
``UPDATE ... JOIN`` gives each row its value, only if the row still holds the
value the window saw: a value the application changed meanwhile is the
application's (it is reported as kept), a deleted row as vanished. The
window, not the rows updated, says whether the shard is done.

Row locks the application holds: between the copy and the UPDATE the batch
waits (up to ``innodb_lock_wait_timeout``, the lock timeout) for the window's
first row alone, holding no other row (``first_sql``), then locks the rest of
the window without waiting (``FOR UPDATE SKIP LOCKED``, ``lock_sql``) and ends
the window before the first row it could not lock (``Outcome.held``: held
elsewhere, or deleted meanwhile); the next batch starts there, and waits on
it first. The UPDATE then meets only rows the batch holds, so a batch never
waits on the application while holding other rows, and the cursor never
passes a row that was not rotated.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.generators import Generator, Tokens
from rotator.sql.base import Outcome
from rotator.sql.mysql.load import load_sql, load_values
from rotator.sql.names import Names, column_of
from rotator.target import Target

if TYPE_CHECKING:  # the module imports MySQLdb: only for the type checker
    from django.db.backends.mysql.base import DatabaseWrapper as MySQLWrapper

# 64 random bits, kept exact as BIGINT UNSIGNED (CONV gives a decimal string).
_RANDOM_64 = "CAST(CONV(HEX(RANDOM_BYTES(8)), 16, 10) AS UNSIGNED)"
# Version 4 in the high nibble of byte 6, RFC 4122 variant in byte 8.
_UUID4_HEX = (
    f"CONCAT(LPAD(HEX({_RANDOM_64} & 0xFFFFFFFFFFFF0FFF | 0x4000), 16, '0'), "
    f"LPAD(HEX({_RANDOM_64} & 0x3FFFFFFFFFFFFFFF | 0x8000000000000000), 16, '0'))"
)


def mysql(connection: BaseDatabaseWrapper) -> MySQLWrapper:
    """``connection`` as Django's MySQL wrapper (for its server facts), to the type checker."""
    return cast("MySQLWrapper", connection)


def has_random_bytes(connection: BaseDatabaseWrapper) -> bool:
    server = mysql(connection)
    return not server.mysql_is_mariadb or server.mysql_version >= (10, 10)


def native_uuid(connection: BaseDatabaseWrapper, target: Target) -> bool:
    """Whether the column is MariaDB's own uuid type: Django's UUIDField on MariaDB 10.7+
    (char(32) lowercase hex elsewhere)."""
    return (target.field.db_type(connection) or "").lower() == "uuid"


def random_uuid4_sql(connection: BaseDatabaseWrapper, target: Target) -> str:
    """A new uuid4 per row from the server's CSPRNG, in the column's own format."""
    # The native type takes 32 hex digits too.
    return _UUID4_HEX if native_uuid(connection, target) else f"LOWER({_UUID4_HEX})"


def server_makes_values(
    connection: BaseDatabaseWrapper, target: Target, source: Generator | Tokens | None
) -> bool:
    """True where the server makes the uuid4 values (``source`` None: --generator database)."""
    if source is None or (isinstance(source, Generator) and source.server_side):
        return True
    return (
        bool(source.packed)
        and type(target.field) is models.UUIDField
        and has_random_bytes(connection)
    )


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class BatchNames(Names):
    """Quoted names of one target's table, columns and session temporary tables."""

    window: str
    values: str

    @classmethod
    def of(cls, connection: BaseDatabaseWrapper, target: Target) -> BatchNames:
        qn = connection.ops.quote_name
        n = Names.of(connection, target)
        suffix = digest(f"{target.model._meta.db_table}.{column_of(target.field)}")
        window, values = qn(f"rotator_win_{suffix}"), qn(f"rotator_new_{suffix}")
        return cls(n.table, n.pk, n.col, window=window, values=values)


#: Session memory a batch's temporary tables may use (MEMORY tables are sized up front).
HEAP_BYTES = 1 << 30


def engine(connection: BaseDatabaseWrapper, target: Target) -> str:
    """MEMORY (no undo, no redo: the window costs a fraction of the UPDATE) unless a
    column is TEXT or BLOB, which MEMORY cannot hold."""
    types = (target.pk.db_type(connection) or "", target.field.db_type(connection) or "")
    return "InnoDB" if any("text" in t or "blob" in t for t in map(str.lower, types)) else "MEMORY"


def create_sql(n: BatchNames, engine: str) -> list[str]:
    # CREATE ... SELECT copies the key's and the column's exact types and collations;
    # IF(FALSE, col, NULL) the column's type, but nullable.
    return [
        f"SET SESSION max_heap_table_size = GREATEST(@@max_heap_table_size, {HEAP_BYTES})",
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {n.window} (rn INT UNSIGNED NOT NULL DEFAULT 0, "
        f"taken BOOL NOT NULL DEFAULT 0, mine BOOL NOT NULL DEFAULT 0, PRIMARY KEY (rn), "
        f"KEY (k)) ENGINE={engine} "
        f"SELECT {n.pk} AS k, {n.col} AS old, IF(FALSE, {n.col}, NULL) AS new "
        f"FROM {n.table} LIMIT 0",
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {n.values} (rn INT UNSIGNED NOT NULL DEFAULT 0, "
        f"PRIMARY KEY (rn)) ENGINE={engine} "
        f"SELECT IF(FALSE, {n.col}, NULL) AS v FROM {n.table} LIMIT 0",
    ]


def window_sql(n: BatchNames, *, lower: bool, keys: int = 0, value: str | None = None) -> str:
    """Copy the window (or the given keys), numbered in key order, into the window table,
    with new values where the server makes them (``value``: SQL)."""
    if keys:
        where = f"{n.pk} IN ({', '.join(['%s'] * keys)})"
    else:
        where = f"{n.pk} > %s AND {n.pk} <= %s" if lower else f"{n.pk} <= %s"
    limit = "" if keys else " LIMIT %s"
    # Numbered outside the LIMIT: a window function under it would number the
    # whole rest of the shard first.
    return (
        f"INSERT INTO {n.window} (rn, k, old, new) SELECT ROW_NUMBER() OVER (ORDER BY w.k), "
        f"w.k, w.old, {value or 'NULL'} FROM (SELECT {n.pk} AS k, {n.col} AS old "
        f"FROM {n.table} WHERE {where} ORDER BY {n.pk}{limit}) AS w"
    )


def summary_sql(n: BatchNames) -> str:
    return f"SELECT COUNT(*), CAST(MAX(k) AS CHAR), COUNT(*) - COUNT(old) FROM {n.window}"


def first_sql(n: BatchNames, *, lower: bool) -> str:
    """Lock the window's first row: the one lock wait of a batch, holding no other row
    (the first row of the window's range: one the application deleted is skipped)."""
    where = f"{n.pk} > %s AND {n.pk} <= %s" if lower else f"{n.pk} <= %s"
    return f"SELECT 1 FROM {n.table} WHERE {where} ORDER BY {n.pk} LIMIT 1 FOR UPDATE"


def lock_sql(n: BatchNames, *, lower: bool) -> str:
    """Lock the window's rows no one else holds, without waiting for the others, and
    mark them ``mine``. The range is the window's (up to its last key, a parameter: the
    window table may be named once a statement on MySQL); LIMIT keeps the locking read
    a derived table of its own, never merged into the UPDATE."""
    where = f"{n.pk} > %s AND {n.pk} <= %s" if lower else f"{n.pk} <= %s"
    return (
        f"UPDATE {n.window} AS w JOIN (SELECT {n.pk} AS k FROM {n.table} WHERE {where} "
        f"ORDER BY {n.pk} LIMIT %s FOR UPDATE SKIP LOCKED) AS x ON x.k = w.k SET w.mine = 1"
    )


def lock_free_sql(n: BatchNames, keys: int, key_text: str) -> str:
    """A sweep's rows no other transaction holds, locked without waiting for the others
    (each held one is then swept alone), as ``key_text`` (the checks' text of a key)."""
    marks = ", ".join(["%s"] * keys)
    return (
        f"SELECT {key_text} FROM {n.table} AS t WHERE t.{n.pk} IN ({marks}) "
        f"ORDER BY t.{n.pk} FOR UPDATE SKIP LOCKED"
    )


def held_sql(n: BatchNames) -> str:
    """The window's first row the batch could not lock, as (rn, key)."""
    return f"SELECT rn, CAST(k AS CHAR) FROM {n.window} WHERE NOT mine ORDER BY rn LIMIT 1"


def _fill(fill_nulls: bool) -> str:
    return "" if fill_nulls else " AND w.old IS NOT NULL"


def pair_sql(n: BatchNames, unique: bool) -> str:
    """Give each window row its loaded value, and mark values another row already holds."""
    taken = f", w.taken = EXISTS (SELECT 1 FROM {n.table} AS x WHERE x.{n.col} = v.v)"
    # Not unique: a value equal to the row's old one (a low-entropy generator) draws again.
    same = ", w.taken = (v.v <=> w.old)"
    return f"UPDATE {n.window} AS w JOIN {n.values} AS v ON v.rn = w.rn SET w.new = v.v" + (
        taken if unique else same
    )


def update_sql(n: BatchNames, fill_nulls: bool) -> str:
    # A row's value is replaced only if it is still what the window saw (<=>: NULL-safe).
    # The window drives (STRAIGHT_JOIN): the UPDATE reads, so locks, only the window's
    # rows, all held by the batch already; a scan of the table would wait on other rows.
    return (
        f"UPDATE {n.window} AS w STRAIGHT_JOIN {n.table} AS t ON t.{n.pk} = w.k "
        f"SET t.{n.col} = w.new "
        f"WHERE NOT w.taken AND t.{n.col} <=> w.old{_fill(fill_nulls)}"
    )


def leftovers_sql(n: BatchNames, fill_nulls: bool) -> str:
    """Rows of the window the UPDATE left alone: value taken, deleted, or changed meanwhile."""
    return (
        f"SELECT CAST(w.k AS CHAR), w.taken FROM {n.window} AS w "
        f"LEFT JOIN {n.table} AS t ON t.{n.pk} = w.k "
        f"WHERE (w.taken OR NOT (t.{n.col} <=> w.new)){_fill(fill_nulls)} ORDER BY w.rn"
    )


def value_sql(
    connection: BaseDatabaseWrapper, target: Target, source: Generator | Tokens | None
) -> str | None:
    """SQL for the new values where the server makes them, else None (loaded)."""
    if server_makes_values(connection, target, source):
        return random_uuid4_sql(connection, target)
    return None


def describe(connection: BaseDatabaseWrapper, target: Target, gen: Generator) -> str:
    """The SQL of one batch, with placeholders, for --dry-run."""
    n = BatchNames.of(connection, target)
    value = value_sql(connection, target, gen)
    lines = [f"DELETE FROM {n.window}", window_sql(n, lower=True, value=value), summary_sql(n)]
    lines += [
        first_sql(n, lower=True) + "  -- the batch's one lock wait",
        lock_sql(n, lower=True),
        held_sql(n) + "  -- then DELETE the window from that row on",
    ]
    if value is None:
        lines += [
            f"DELETE FROM {n.values}",
            load_sql(n.values, target, "/dev/fd/N") + "  -- a pipe: values never in SQL text",
            pair_sql(n, target.unique),
        ]
    lines.append(update_sql(n, fill_nulls=False))
    return ";\n".join(lines) + ";"


@dataclass(frozen=True)
class Lock:
    """How a batch locks its window: ``first`` (SQL, parameters) waits for its first row;
    ``rest`` locks the others without waiting (SQL, parameters for the window's last key)."""

    first: tuple[str, list[Any]]
    rest: tuple[str, Callable[[str], list[Any]]]


def _summary(cur: Any, n: BatchNames) -> tuple[int, str | None, int]:
    cur.execute(summary_sql(n))
    seen, last, nulls = cur.fetchone()
    return int(seen), last, int(nulls or 0)


def _lock_window(cur: Any, n: BatchNames, lock: Lock, last: str) -> str | None:
    """Wait for the window's first row alone, lock the others without waiting, and end
    the window before the first row not locked; return that row's key (None: all locked)."""
    cur.execute(*lock.first)
    cur.fetchall()
    cur.execute(lock.rest[0], lock.rest[1](last))
    cur.execute(held_sql(n))
    row = cur.fetchone()
    if row is None:
        return None
    rn, held = row
    cur.execute(f"DELETE FROM {n.window} WHERE rn >= %s", [rn])
    return str(held)


def run_batch(
    connection: BaseDatabaseWrapper,
    target: Target,
    window: tuple[str, list[Any]],
    values: Callable[[], list[Any]] | None,
    fill_nulls: bool,
    lock: Lock | None = None,
    fingerprint: Callable[[Any], None] | None = None,
) -> Outcome:
    """Copy ``window`` (SQL, parameters), lock its rows (``lock``; None: keys this
    transaction holds already), pair it with ``values`` (None: the server made them),
    then update the rows that still hold what the window saw; ``fingerprint``: called
    with the cursor once the window table holds the rows to rotate, before the UPDATE."""
    n = BatchNames.of(connection, target)
    with (
        connection.wrap_database_errors,
        contextlib.closing(connection.connection.cursor()) as cur,
    ):
        cur.execute(f"DELETE FROM {n.window}")
        cur.execute(*window)
        seen, last, nulls = _summary(cur, n)
        held = None
        if seen and lock is not None and last is not None:
            held = _lock_window(cur, n, lock, last)
            if held is not None:
                seen, last, nulls = _summary(cur, n)
        if not seen:
            return Outcome(held=held)
        if fingerprint is not None:
            fingerprint(cur)
        if values is not None:
            load_values(cur, target, n.values, values())
            # target.unique, not field.unique: unique_together and UniqueConstraint too.
            cur.execute(pair_sql(n, target.unique))
        cur.execute(update_sql(n, fill_nulls))
        rotated = cur.rowcount
        collided: list[Any] = []
        missed: list[Any] = []
        if rotated < seen - (0 if fill_nulls else nulls):
            cur.execute(leftovers_sql(n, fill_nulls))
            for key, taken in cur.fetchall():
                (collided if taken else missed).append(key)
    return Outcome(seen, last, rotated, nulls, collided, missed, held)
