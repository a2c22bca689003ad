"""MariaDB and MySQL: one UPDATE per batch, and no new value ever in SQL text.

No new value may be a bind parameter (see mysql_pipe.py). Two ways in instead:

- ``uuid4`` (or ``--generator database``) into a plain UUIDField where the
  server has ``RANDOM_BYTES()`` (MariaDB 10.10+, MySQL): the server makes each
  value from its CSPRNG, the version and variant bits set in SQL.
- Any other generator: the values stream through ``LOAD DATA LOCAL INFILE``
  from a pipe into a session temporary table; rows whose new value is already
  taken are marked there first and get other values (``rotate_keys``).

A batch first copies its keyset window (keys and old values, numbered) into a
session temporary table, a plain read at READ COMMITTED that locks nothing;
then one ``UPDATE ... JOIN`` gives each row its value, only if the row still
holds the value the window saw: a value the application changed meanwhile is
the application's (it is reported as kept), a deleted row as vanished. The
window, not the rows updated, says whether the shard is done.

Liveness uses ``GET_LOCK()`` named locks, which die with the session like
PostgreSQL's advisory locks; errors are told apart by their numbers.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

from django.db import connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.errors import RotatorError
from rotator.service.generators import Generator, Tokens
from rotator.service.target import Target
from rotator.sql import mysql_pipe
from rotator.sql.base import Builder, Outcome, Split, Window, positions, sizes_of
from rotator.sql.mysql_text import (
    Names,
    create_sql,
    digest,
    engine,
    has_random_bytes,
    leftovers_sql,
    load_sql,
    pair_sql,
    random_uuid4_sql,
    server_makes_values,
    summary_sql,
    update_sql,
    window_sql,
)
from rotator.workers.faults import Fault, Kind

try:
    import MySQLdb
except ImportError:  # no `mysql` extra: Django's MySQL backend (and so this builder) is unused
    MySQLdb = None

# Error numbers (never messages).
DUP_ENTRY = 1062
LOCK_WAIT_TIMEOUT = 1205
DEADLOCK = 1213
TIMEOUTS = (1317, 1969, 3024)  # query interrupted; max_statement_time; max_execution_time
GONE = (1053, 1927, 2002, 2003, 2006, 2013, 2055, 4031)
LOCAL_INFILE_REFUSED = (1148, 2068, 3948, 4166)

PLAN_LOCK_SECONDS = 600


def error_code(exc: BaseException) -> int | None:
    """The server's (or client library's) error number behind ``exc``, if any."""
    cause = exc.__cause__ or exc
    if MySQLdb is None or not isinstance(cause, MySQLdb.MySQLError):
        return None
    code = cause.args[0] if cause.args else None
    return code if isinstance(code, int) else None


class MySQLBuilder(Builder):
    vendor = "mysql"
    concurrent_writers = True

    def supports(self, target: Target, generator: Generator) -> str | None:
        if generator.server_side:
            if type(target.field) is not models.UUIDField:
                return "--generator database (RANDOM_BYTES()) only fills plain UUID columns"
            if not has_random_bytes(connections[target.alias]):
                return "--generator database needs RANDOM_BYTES() (MariaDB 10.10+ or MySQL)"
        return None

    def key_param(self, target: Target, text: str) -> Any:
        # An integer key compared with a string would be compared as a double.
        integer = isinstance(target.pk, models.IntegerField | models.AutoField)
        return int(text) if integer else text

    # The session and the batch.

    def prepare_session(self, connection: BaseDatabaseWrapper, target: Target, name: str) -> None:
        with (
            connection.wrap_database_errors,
            contextlib.closing(connection.connection.cursor()) as cur,
        ):
            cur.execute("SELECT @@log_bin, @@session.binlog_format")
            log_bin, binlog_format = cur.fetchone()
            if log_bin and str(binlog_format).upper() == "STATEMENT":
                # Statement form would copy LOAD DATA's values into the binary log and
                # replay RANDOM_BYTES() with other results on replicas.
                try:
                    cur.execute("SET SESSION binlog_format = 'ROW'")
                except MySQLdb.MySQLError as exc:
                    raise RotatorError(
                        f"binlog_format is STATEMENT and this user cannot set it to ROW for its "
                        f"session ({exc.args[0]}); grant BINLOG ADMIN (or SUPER), or set "
                        "binlog_format=MIXED or ROW on the server"
                    ) from None
            for sql in create_sql(Names(connection, target), engine(connection, target)):
                cur.execute(sql)

    def guard_transaction(
        self, connection: BaseDatabaseWrapper, lock_timeout: float, idle_timeout: float
    ) -> None:
        raw = connection.connection
        guards = (max(1, math.ceil(lock_timeout)), max(1, math.ceil(idle_timeout)))
        if getattr(raw, "_rotator_guards", None) == guards:
            return  # session variables: once per connection
        # lock_wait_timeout bounds metadata-lock waits (a batch queued behind an ALTER TABLE).
        sql = f"SET SESSION innodb_lock_wait_timeout = {guards[0]}, lock_wait_timeout = {guards[0]}"
        if connection.mysql_is_mariadb:
            sql += f", idle_transaction_timeout = {guards[1]}"
        with connection.wrap_database_errors, contextlib.closing(raw.cursor()) as cur:
            cur.execute(sql)
        raw._rotator_guards = guards

    def _batch(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        window: tuple[str, list[Any]],
        tokens: Tokens | None,
        fill_nulls: bool,
    ) -> Outcome:
        n = Names(connection, target)
        server = server_makes_values(connection, target, tokens)
        with (
            connection.wrap_database_errors,
            contextlib.closing(connection.connection.cursor()) as cur,
        ):
            cur.execute(f"DELETE FROM {n.window}")
            cur.execute(*window)
            cur.execute(summary_sql(n))
            seen, last, nulls = cur.fetchone()
            if not seen:
                return Outcome()
            if not server:
                assert tokens is not None
                self._load(cur, connection, target, n, tokens)
                cur.execute(pair_sql(n, target.field.unique))
            cur.execute(update_sql(n, fill_nulls))
            rotated = cur.rowcount
            collided, missed = [], []
            if rotated < seen - (0 if fill_nulls else int(nulls)):
                cur.execute(leftovers_sql(n, fill_nulls))
                for key, taken in cur.fetchall():
                    (collided if taken else missed).append(key)
        return Outcome(int(seen), last, rotated, int(nulls), collided, missed)

    @staticmethod
    def _value(
        connection: BaseDatabaseWrapper, target: Target, source: Generator | Tokens | None
    ) -> str | None:
        """SQL for the new values where the server makes them, else None (loaded)."""
        if server_makes_values(connection, target, source):
            return random_uuid4_sql(connection, target)
        return None

    def _load(self, cur: Any, connection: Any, target: Target, n: Names, tokens: Tokens) -> None:
        cur.execute(f"DELETE FROM {n.values}")
        data = mysql_pipe.numbered_lines(self.prep_values(connection, target, tokens))
        try:
            mysql_pipe.load_from_pipe(cur, lambda path: load_sql(n, target, path), data)
        except MySQLdb.MySQLError as exc:
            if error_code(exc) in LOCAL_INFILE_REFUSED:
                raise RotatorError(
                    f"LOAD DATA LOCAL INFILE was refused ({exc.args[0]}): new values for "
                    f"{target.label} travel that way so that no server log shows them; enable "
                    "local_infile on the server and add 'local_infile': 1 to the database's "
                    "OPTIONS"
                ) from None
            raise

    def rotate(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        window: Window,
        tokens: Tokens | None,
        fill_nulls: bool,
    ) -> Outcome:
        n = Names(connection, target)
        params = [self.key_param(target, window.hi), window.limit]
        if window.lo is not None:
            params.insert(0, self.key_param(target, window.lo))
        sql = window_sql(
            n, lower=window.lo is not None, value=self._value(connection, target, tokens)
        )
        return self._batch(connection, target, (sql, params), tokens, fill_nulls)

    def rotate_keys(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        keys: list[Any],
        tokens: Tokens | None,
        fill_nulls: bool,
    ) -> Outcome:
        n = Names(connection, target)
        params = [self.key_param(target, str(k)) for k in keys]
        value = self._value(connection, target, tokens)
        sql = window_sql(n, lower=False, keys=len(keys), value=value)
        return self._batch(connection, target, (sql, params), tokens, fill_nulls)

    def count_present(
        self, connection: BaseDatabaseWrapper, target: Target, keys: list[Any]
    ) -> int:
        n = Names(connection, target)
        marks = ", ".join(["%s"] * len(keys))
        with (
            connection.wrap_database_errors,
            contextlib.closing(connection.connection.cursor()) as cur,
        ):
            cur.execute(
                f"SELECT COUNT(*) FROM {n.table} WHERE {n.pk} IN ({marks})",
                [self.key_param(target, str(k)) for k in keys],
            )
            return cur.fetchone()[0]

    def describe(self, connection: BaseDatabaseWrapper, target: Target, gen: Generator) -> str:
        n = Names(connection, target)
        value = self._value(connection, target, gen)
        lines = [f"DELETE FROM {n.window}", window_sql(n, lower=True, value=value), summary_sql(n)]
        if value is None:
            lines += [
                f"DELETE FROM {n.values}",
                load_sql(n, target, "/dev/fd/N") + "  -- a pipe: values never in SQL text",
                pair_sql(n, target.field.unique),
            ]
        lines.append(update_sql(n, fill_nulls=False))
        return ";\n".join(lines) + ";"

    # The plan: one count, then one walk of the key index from boundary to boundary.

    def plan_lock(self, connection: BaseDatabaseWrapper, target: Target) -> None:
        # Named locks are not transactional: released once the plan commits (or
        # with the session, if planning fails).
        name = self._lock_name(connection, f"plan:{target.model._meta.db_table}")
        with connection.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, %s)", [name, PLAN_LOCK_SECONDS])
            if cur.fetchone()[0] != 1:
                raise RotatorError(
                    f"another rotator has been planning {target.label} for "
                    f"{PLAN_LOCK_SECONDS} s; wait for it, then run the command again"
                )

        def release() -> None:
            with connection.cursor() as cur:
                cur.execute("SELECT RELEASE_LOCK(%s)", [name])

        transaction.on_commit(release, using=target.alias)

    def split(self, connection: BaseDatabaseWrapper, target: Target, shards: int) -> Split:
        n = Names(connection, target)
        with contextlib.closing(connection.connection.cursor()) as cur:
            cur.execute(f"SELECT CAST({n.pk} AS CHAR) FROM {n.table} ORDER BY {n.pk} DESC LIMIT 1")
            row = cur.fetchone()
            if row is None:
                return Split(None, 0, [], [])
            high = row[0]
            cur.execute(
                f"SELECT COUNT(*) FROM {n.table} WHERE {n.pk} <= %s", [self.key_param(target, high)]
            )
            ends = positions(cur.fetchone()[0], shards)
            uppers: list[str] = []
            for size in sizes_of(ends)[:-1]:
                lower = f"{n.pk} > %s AND " if uppers else ""
                params = [self.key_param(target, uppers[-1])] if uppers else []
                cur.execute(
                    f"SELECT CAST({n.pk} AS CHAR) FROM {n.table} WHERE {lower}{n.pk} <= %s "
                    f"ORDER BY {n.pk} LIMIT 1 OFFSET %s",
                    [*params, self.key_param(target, high), size - 1],
                )
                found = cur.fetchone()
                if found is None or found[0] == high:  # rows deleted while planning
                    break
                uppers.append(found[0])
        uppers.append(high)
        return Split(high, ends[-1], uppers, sizes_of(positions(ends[-1], len(uppers))))

    # Liveness: a named lock per shard, held by the worker's session.

    @staticmethod
    def _lock_name(connection: BaseDatabaseWrapper, what: str) -> str:
        # Named locks are server-wide: the database's name keeps two databases apart.
        return f"rotator:{digest(connection.settings_dict['NAME'] + ':' + what)}"

    def _lock(self, connection: BaseDatabaseWrapper, sql: str, shard_id: int) -> Any:
        name = self._lock_name(connection, f"shard:{shard_id}")
        with (
            connection.wrap_database_errors,
            contextlib.closing(connection.connection.cursor()) as cur,
        ):
            cur.execute(sql, [name])
            return cur.fetchone()[0]

    def try_own(self, connection: BaseDatabaseWrapper, shard_id: int) -> bool:
        return self._lock(connection, "SELECT GET_LOCK(%s, 0)", shard_id) == 1

    def disown(self, connection: BaseDatabaseWrapper, shard_id: int) -> None:
        self._lock(connection, "SELECT RELEASE_LOCK(%s)", shard_id)

    def disown_all(self, connection: BaseDatabaseWrapper) -> None:
        with (
            connection.wrap_database_errors,
            contextlib.closing(connection.connection.cursor()) as cur,
        ):
            cur.execute("SELECT RELEASE_ALL_LOCKS()")

    def owner_alive(self, connection: BaseDatabaseWrapper, shard_id: int) -> bool | None:
        return self._lock(connection, "SELECT IS_USED_LOCK(%s)", shard_id) is not None

    def backend_id(self, connection: BaseDatabaseWrapper) -> int | None:
        return connection.connection.thread_id()

    def blockers(
        self, connection: BaseDatabaseWrapper, backends: list[int]
    ) -> dict[int, list[int]]:
        marks = ", ".join(["%s"] * len(backends))
        found: dict[int, list[int]] = {}
        try:
            with contextlib.closing(connection.connection.cursor()) as cur:
                cur.execute(
                    "SELECT waiting_pid, blocking_pid FROM sys.innodb_lock_waits "
                    f"WHERE waiting_pid IN ({marks})",
                    backends,
                )
                for waiting, blocking in cur.fetchall():
                    found.setdefault(int(waiting), []).append(int(blocking))
        except MySQLdb.MySQLError:  # no sys schema (or no right to read it)
            return {}
        return found

    # Faults, by error number.

    def fault(self, exc: BaseException) -> Fault | None:
        code = error_code(exc)
        if code == LOCK_WAIT_TIMEOUT:
            return Fault(Kind.LOCK, "a row lock was held longer than innodb_lock_wait_timeout")
        if code == DEADLOCK:
            return Fault(Kind.CONFLICT, "deadlock with another transaction")
        if code in TIMEOUTS:
            return Fault(Kind.TIMEOUT, f"statement interrupted ({code})")
        if code == DUP_ENTRY:
            return Fault(Kind.COLLISION, "a new value was taken by a concurrent insert")
        if code in GONE:
            return Fault(Kind.CONNECTION, f"the connection to the server was lost ({code})")
        return None

    def connection_id(self, connection: BaseDatabaseWrapper) -> str:
        return f"mysql:id={connection.connection.thread_id()}"

    def interrupt(self, connection: BaseDatabaseWrapper) -> None:
        raw = connection.connection
        if raw is None:
            return
        # KILL QUERY from a second connection: the statement fails, its
        # transaction rolls back, the worker's session stays usable.
        params = {**connection.get_connection_params(), "connect_timeout": 2}
        killer = MySQLdb.connect(**params)
        try:
            killer.cursor().execute(f"KILL QUERY {int(raw.thread_id())}")
        finally:
            killer.close()

    def is_unique_violation(self, exc: BaseException) -> bool:
        return error_code(exc) == DUP_ENTRY
