"""MariaDB and MySQL: one UPDATE per batch, and no new value ever in SQL text.

mysqlclient interpolates parameters into the query text, and server-side
prepared statements reach the general and slow logs with their values, so a
new value may never be a parameter. Two ways in instead:

- ``uuid4`` (or ``--generator database``) into a UUIDField, where the server
  has ``RANDOM_BYTES()`` (MariaDB 10.10+, MySQL): the server makes the values
  from its own CSPRNG, with the version and variant bits set in SQL, in one
  range UPDATE over the window.
- Any other generator: the values stream through ``LOAD DATA LOCAL INFILE``
  from an anonymous pipe (``/dev/fd/N``, never a file on disk) into a session
  temporary table, then one ``UPDATE ... JOIN``. The logs show the statements,
  never the data.

The window's last key is read first (an index-only keyset read), and the
UPDATE covers exactly the keys up to it, so rows a live application inserts
meanwhile can never push an old row out of the window.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from ..errors import RotatorError
from ..generators import Generator, Tokens
from ..target import Target
from .base import Builder

try:
    import MySQLdb
except ImportError:  # no `mysql` extra: Django's MySQL backend (and so this builder) is unused
    MySQLdb = None

# MySQL/MariaDB error codes (by number, never by message).
DUP_ENTRY = 1062
LOCK_WAIT_TIMEOUT = 1205
DEADLOCK = 1213
LOCAL_INFILE_REFUSED = (1148, 2068, 3948, 4166)

LOCK_WAIT_SECONDS = 10

# 64 random bits, kept exact as BIGINT UNSIGNED (CONV gives a decimal string).
_RANDOM_64 = "CAST(CONV(HEX(RANDOM_BYTES(8)), 16, 10) AS UNSIGNED)"
# Version 4 in the high nibble of byte 6, RFC 4122 variant in byte 8.
_UUID4_HEX = (
    f"CONCAT(LPAD(HEX({_RANDOM_64} & 0xFFFFFFFFFFFF0FFF | 0x4000), 16, '0'), "
    f"LPAD(HEX({_RANDOM_64} & 0x3FFFFFFFFFFFFFFF | 0x8000000000000000), 16, '0'))"
)


def error_code(exc: BaseException) -> int | None:
    """The server's error number behind a Django DatabaseError, if any."""
    cause = exc.__cause__ or exc
    if MySQLdb is None or not isinstance(cause, MySQLdb.MySQLError):
        return None
    if cause.args and isinstance(cause.args[0], int):
        return cause.args[0]
    return None


def has_random_bytes(connection: BaseDatabaseWrapper) -> bool:
    return not connection.mysql_is_mariadb or connection.mysql_version >= (10, 10)


def uses_native_uuid(connection: BaseDatabaseWrapper, target: Target) -> bool:
    return target.field.db_type(connection).lower() == "uuid"


def random_uuid4_sql(connection: BaseDatabaseWrapper, target: Target) -> str:
    """A new uuid4 per row from the server's CSPRNG, in the column's format."""
    # Django stores UUIDField as native uuid on MariaDB 10.7+ (it takes 32
    # hex digits), as char(32) lowercase hex elsewhere.
    return _UUID4_HEX if uses_native_uuid(connection, target) else f"LOWER({_UUID4_HEX})"


def server_makes_values(
    connection: BaseDatabaseWrapper, target: Target, source: Generator | Tokens | None
) -> bool:
    """True where the server makes uuid4 values itself (``source`` None: --generator database)."""
    if source is None or (isinstance(source, Generator) and source.server_side):
        return True
    return (
        bool(source.packed)
        and target.field.get_internal_type() == "UUIDField"
        and has_random_bytes(connection)
    )


def _names(connection: BaseDatabaseWrapper, target: Target) -> dict[str, str]:
    qn = connection.ops.quote_name
    table = target.model._meta.db_table
    return {
        "pk": qn(target.pk.column),
        "table": qn(table),
        "col": qn(target.field.column),
        "values": qn(f"rotator_new_{table}"[:64]),
    }


def _range(pk: str, lower: bool) -> str:
    return f"{pk} > %s AND {pk} <= %s" if lower else f"{pk} <= %s"


def window_sql(connection: BaseDatabaseWrapper, target: Target, lower: bool) -> str:
    n = _names(connection, target)
    return (
        f"SELECT COUNT(*), MAX(w.k) FROM (SELECT {n['pk']} AS k FROM {n['table']} "
        f"WHERE {_range(n['pk'], lower)} ORDER BY {n['pk']} LIMIT %s) AS w"
    )


def update_random_sql(connection: BaseDatabaseWrapper, target: Target, lower: bool) -> str:
    n = _names(connection, target)
    return (
        f"UPDATE {n['table']} SET {n['col']} = {random_uuid4_sql(connection, target)} "
        f"WHERE {_range(n['pk'], lower)}"
    )


def keys_sql(connection: BaseDatabaseWrapper, target: Target, lower: bool) -> str:
    n = _names(connection, target)
    return (
        f"SELECT {n['pk']} FROM {n['table']} WHERE {_range(n['pk'], lower)} "
        f"ORDER BY {n['pk']} LIMIT %s"
    )


def create_values_sql(connection: BaseDatabaseWrapper, target: Target) -> str:
    # CREATE ... SELECT copies the key's and the column's exact types and collations.
    n = _names(connection, target)
    return (
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {n['values']} (PRIMARY KEY (k)) "
        f"SELECT {n['pk']} AS k, {n['col']} AS v FROM {n['table']} LIMIT 0"
    )


def _decode(field: Any, var: str) -> str:
    if field.get_internal_type() == "BinaryField":
        return f"UNHEX({var})"
    return f"CONVERT(UNHEX({var}) USING utf8mb4)"


def load_values_sql(connection: BaseDatabaseWrapper, target: Target, path: str) -> str:
    n = _names(connection, target)
    return (
        f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {n['values']} CHARACTER SET binary "
        f"(@k, @v) SET k = {_decode(target.pk, '@k')}, v = {_decode(target.field, '@v')}"
    )


def update_join_sql(connection: BaseDatabaseWrapper, target: Target) -> str:
    n = _names(connection, target)
    return (
        f"UPDATE {n['table']} AS t JOIN {n['values']} AS n ON t.{n['pk']} = n.k "
        f"SET t.{n['col']} = n.v"
    )


def _hex(value: Any) -> str:
    """One LOAD DATA field: the value's bytes in hex (no escaping to get wrong)."""
    if value is None:
        return "\\N"
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value).encode().hex()


def _lines(keys: Iterable[Any], values: Iterable[Any]) -> bytes:
    return "".join(f"{_hex(k)}\t{_hex(v)}\n" for k, v in zip(keys, values, strict=False)).encode()


def load_from_pipe(cursor: Any, sql_for_path: Any, data: bytes) -> None:
    """Run LOAD DATA LOCAL INFILE on an anonymous pipe fed by a thread."""
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        # A failed LOAD closes the read end: the write then fails, ending the thread.
        with contextlib.suppress(OSError), os.fdopen(write_fd, "wb") as pipe:
            pipe.write(data)

    feeder = threading.Thread(target=feed, name="rotator-load-data", daemon=True)
    feeder.start()
    try:
        cursor.execute(sql_for_path(f"/dev/fd/{read_fd}"))
    finally:
        os.close(read_fd)
        feeder.join()


class MySQLBuilder(Builder):
    vendor = "mysql"
    concurrent_writers = True

    def supports(self, target: Target, generator: Generator) -> str | None:
        connection = connections[target.alias]
        if generator.server_side:
            if target.field.get_internal_type() != "UUIDField":
                return "--generator database (RANDOM_BYTES()) only fills UUID columns"
            if not has_random_bytes(connection):
                return "--generator database needs RANDOM_BYTES() (MariaDB 10.10+ or MySQL)"
        return None

    def rotate(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        lo: Any,
        hi: Any,
        limit: int,
        tokens: Tokens | None,
    ) -> tuple[int, Any]:
        self.prepare_session(connection)
        bounds = [self.prep_key(connection, target, hi)]
        if lo is not None:
            bounds.insert(0, self.prep_key(connection, target, lo))
        lower = lo is not None
        with (
            connection.wrap_database_errors,
            contextlib.closing(connection.connection.cursor()) as cur,
        ):
            if server_makes_values(connection, target, tokens):
                cur.execute(window_sql(connection, target, lower), [*bounds, limit])
                count, last = cur.fetchone()
                if not count:
                    return 0, None
                cur.execute(update_random_sql(connection, target, lower), [*bounds[:-1], last])
                return cur.rowcount, last
            assert tokens is not None
            cur.execute(keys_sql(connection, target, lower), [*bounds, limit])
            keys = [row[0] for row in cur.fetchall()]
            if not keys:
                return 0, None
            cur.execute(create_values_sql(connection, target))
            cur.execute(f"DELETE FROM {_names(connection, target)['values']}")
            data = _lines(keys, self.prep_values(connection, target, tokens))
            try:
                load_from_pipe(cur, lambda p: load_values_sql(connection, target, p), data)
            except MySQLdb.MySQLError as exc:
                if exc.args and exc.args[0] in LOCAL_INFILE_REFUSED:
                    raise RotatorError(
                        f"LOAD DATA LOCAL INFILE was refused ({exc.args[0]}): new values for "
                        f"{target.label} travel that way so that no server log sees them; "
                        "enable local_infile on the server and add 'local_infile': 1 to the "
                        "database's OPTIONS"
                    ) from None
                raise
            cur.execute(update_join_sql(connection, target))
            return cur.rowcount, keys[-1]

    def describe(self, connection: BaseDatabaseWrapper, target: Target, gen: Generator) -> str:
        if server_makes_values(connection, target, gen):
            return (
                f"{window_sql(connection, target, True)};\n"
                f"{update_random_sql(connection, target, True)};  -- %s = the window's last key"
            )
        return (
            f"{keys_sql(connection, target, True)};\n"
            f"{create_values_sql(connection, target)};\n"
            f"{load_values_sql(connection, target, '/dev/fd/N')};  -- a pipe, not a file\n"
            f"{update_join_sql(connection, target)}"
        )

    def prepare_session(self, connection: BaseDatabaseWrapper) -> None:
        """Session guards, once per server connection (first outside any transaction)."""
        raw = connection.connection
        if getattr(raw, "_rotator_ready", False):
            return
        with contextlib.closing(raw.cursor()) as cur:
            cur.execute(f"SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT_SECONDS}")
            cur.execute("SELECT @@log_bin, @@session.binlog_format")
            log_bin, binlog_format = cur.fetchone()
            if log_bin and str(binlog_format).upper() == "STATEMENT":
                # Statement form would copy LOAD DATA's values into the binary log
                # and replay RANDOM_BYTES() with other results on replicas.
                try:
                    cur.execute("SET SESSION binlog_format = 'ROW'")
                except MySQLdb.MySQLError as exc:
                    raise RotatorError(
                        f"binlog_format is STATEMENT and this user cannot set it to ROW for "
                        f"its session ({exc.args[0]}); grant BINLOG ADMIN (or SUPER), or set "
                        "binlog_format=MIXED or ROW on the server"
                    ) from None
        raw._rotator_ready = True

    def connection_id(self, connection: BaseDatabaseWrapper) -> str:
        # Called on each worker's fresh connection before its first transaction.
        self.prepare_session(connection)
        return f"mysql:id={connection.connection.thread_id()}"

    def interrupt(self, connection: BaseDatabaseWrapper) -> None:
        raw = connection.connection
        if raw is None:
            return
        # KILL QUERY from a second connection: the statement fails, its
        # transaction rolls back, the worker's connection stays usable.
        killer = MySQLdb.connect(**connection.get_connection_params())
        try:
            killer.cursor().execute(f"KILL QUERY {int(raw.thread_id())}")
        finally:
            killer.close()

    def is_unique_violation(self, exc: BaseException) -> bool:
        return error_code(exc) == DUP_ENTRY

    def is_lock_timeout(self, exc: BaseException) -> bool:
        return error_code(exc) == LOCK_WAIT_TIMEOUT

    def is_deadlock(self, exc: BaseException) -> bool:
        return error_code(exc) == DEADLOCK
