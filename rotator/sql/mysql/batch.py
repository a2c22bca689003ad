"""The SQL text of the MariaDB/MySQL builder: placeholders for keys only, never a value.

Two session temporary tables per target: the window (``rn``, key, old value,
new value, whether that value is taken) and the loaded values (``rn``, value).
"""

from __future__ import annotations

import hashlib

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.service.generators import Generator, Tokens
from rotator.service.target import Target
from rotator.sql import mysql_pipe

# 64 random bits, kept exact as BIGINT UNSIGNED (CONV gives a decimal string).
_RANDOM_64 = "CAST(CONV(HEX(RANDOM_BYTES(8)), 16, 10) AS UNSIGNED)"
# Version 4 in the high nibble of byte 6, RFC 4122 variant in byte 8.
_UUID4_HEX = (
    f"CONCAT(LPAD(HEX({_RANDOM_64} & 0xFFFFFFFFFFFF0FFF | 0x4000), 16, '0'), "
    f"LPAD(HEX({_RANDOM_64} & 0x3FFFFFFFFFFFFFFF | 0x8000000000000000), 16, '0'))"
)


def has_random_bytes(connection: BaseDatabaseWrapper) -> bool:
    return not connection.mysql_is_mariadb or connection.mysql_version >= (10, 10)


def random_uuid4_sql(connection: BaseDatabaseWrapper, target: Target) -> str:
    """A new uuid4 per row from the server's CSPRNG, in the column's own format."""
    # Django stores UUIDField as native uuid on MariaDB 10.7+ (it takes 32 hex
    # digits), as char(32) lowercase hex elsewhere.
    native = target.field.db_type(connection).lower() == "uuid"
    return _UUID4_HEX if native else f"LOWER({_UUID4_HEX})"


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


class Names:
    """Quoted names of one target's table, columns and session temporary tables."""

    def __init__(self, connection: BaseDatabaseWrapper, target: Target) -> None:
        qn = connection.ops.quote_name
        table = target.model._meta.db_table
        self.table, self.pk, self.col = qn(table), qn(target.pk.column), qn(target.field.column)
        suffix = digest(f"{table}.{target.field.column}")
        self.window, self.values = qn(f"rotator_win_{suffix}"), qn(f"rotator_new_{suffix}")


#: Session memory a batch's temporary tables may use (MEMORY tables are sized up front).
HEAP_BYTES = 1 << 30


def engine(connection: BaseDatabaseWrapper, target: Target) -> str:
    """MEMORY (no undo, no redo: the window costs a fraction of the UPDATE) unless a
    column is TEXT or BLOB, which MEMORY cannot hold."""
    types = (target.pk.db_type(connection) or "", target.field.db_type(connection) or "")
    return "InnoDB" if any("text" in t or "blob" in t for t in map(str.lower, types)) else "MEMORY"


def create_sql(n: Names, engine: str) -> list[str]:
    # CREATE ... SELECT copies the key's and the column's exact types and collations;
    # IF(FALSE, col, NULL) the column's type, but nullable.
    return [
        f"SET SESSION max_heap_table_size = GREATEST(@@max_heap_table_size, {HEAP_BYTES})",
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {n.window} (rn INT UNSIGNED NOT NULL DEFAULT 0, "
        f"taken BOOL NOT NULL DEFAULT 0, PRIMARY KEY (rn), KEY (k)) ENGINE={engine} "
        f"SELECT {n.pk} AS k, {n.col} AS old, IF(FALSE, {n.col}, NULL) AS new "
        f"FROM {n.table} LIMIT 0",
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {n.values} (rn INT UNSIGNED NOT NULL DEFAULT 0, "
        f"PRIMARY KEY (rn)) ENGINE={engine} "
        f"SELECT IF(FALSE, {n.col}, NULL) AS v FROM {n.table} LIMIT 0",
    ]


def window_sql(n: Names, *, lower: bool, keys: int = 0, value: str | None = None) -> str:
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


def summary_sql(n: Names) -> str:
    return f"SELECT COUNT(*), CAST(MAX(k) AS CHAR), COUNT(*) - COUNT(old) FROM {n.window}"


def load_sql(n: Names, target: Target, path: str) -> str:
    value = mysql_pipe.decode_sql(target.field.get_internal_type(), "@v")
    return (
        f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {n.values} CHARACTER SET binary "
        f"(rn, @v) SET v = {value}"
    )


def _fill(fill_nulls: bool) -> str:
    return "" if fill_nulls else " AND w.old IS NOT NULL"


def pair_sql(n: Names, unique: bool) -> str:
    """Give each window row its loaded value, and mark values another row already holds."""
    taken = f", w.taken = EXISTS (SELECT 1 FROM {n.table} AS x WHERE x.{n.col} = v.v)"
    return f"UPDATE {n.window} AS w JOIN {n.values} AS v ON v.rn = w.rn SET w.new = v.v" + (
        taken if unique else ""
    )


def update_sql(n: Names, fill_nulls: bool) -> str:
    # A row's value is replaced only if it is still what the window saw (<=>: NULL-safe).
    return (
        f"UPDATE {n.table} AS t JOIN {n.window} AS w ON t.{n.pk} = w.k SET t.{n.col} = w.new "
        f"WHERE NOT w.taken AND t.{n.col} <=> w.old{_fill(fill_nulls)}"
    )


def leftovers_sql(n: Names, fill_nulls: bool) -> str:
    """Rows of the window the UPDATE left alone: value taken, deleted, or changed meanwhile."""
    return (
        f"SELECT CAST(w.k AS CHAR), w.taken FROM {n.window} AS w "
        f"LEFT JOIN {n.table} AS t ON t.{n.pk} = w.k "
        f"WHERE (w.taken OR NOT (t.{n.col} <=> w.new)){_fill(fill_nulls)} ORDER BY w.rn"
    )
