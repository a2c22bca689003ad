"""PostgreSQL: one set-based statement per batch; new values arrive by COPY.

New values never travel as a bind parameter or in SQL text: PostgreSQL logs
those (``log_min_duration_statement``, ``log_statement``), and a unique
violation's DETAIL would log a live value. They are COPYed (binary) into a
session temporary table, which the server log never shows, and the batch
statement skips any row whose new value is already taken instead of failing:
those rows get other values in the same transaction (``rotate_keys``).

The keyset window is numbered with row_number() and each row takes the new
value of the same number. The UPDATE repeats the key range, bounded by the
window's largest key, so PostgreSQL reads only the window through the
primary key index (see EXPLAIN in tests/test_sql.py). A row the application
deleted or re-valued while the batch ran is left alone and reported, and the
window, not the number of rows updated, says whether the shard is done.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import psycopg
from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.errors import RotatorError
from rotator.faults import Fault, Kind
from rotator.generators import Generator, Tokens
from rotator.sql.base import (
    Builder,
    Outcome,
    Split,
    Window,
    positions,
    sizes_of,
    verify_names,
)
from rotator.sql.digests import DIGEST_BYTES, PROOF_HEX, PROOF_TABLE, Digests, stale_queries
from rotator.sql.names import Names, column_of
from rotator.sql.replication import CAN_READ_SQL, LAG_SQL
from rotator.target import Target
from rotator.values import native_uuid

_BPCHAR_OID, _TEXT_OID = 1042, 25

#: The first key of the rotator's advisory locks ("rot"); the second is the shard id.
ADVISORY_CLASS = 0x726F74
#: Advisory transaction lock class for planning ("rop"); the second key hashes the column.
PLAN_CLASS = 0x726F70
#: Up to this many rows (by the statistics) a plan is exact; above, it samples.
EXACT_PLAN_ROWS = 1_000_000
SAMPLE_ROWS = 50_000

_BATCH = """\
WITH win AS (
    SELECT {pk} AS k, {col} AS old, row_number() OVER (ORDER BY {pk}) AS rn
    FROM {table}
    WHERE {where}
    ORDER BY {pk}
    LIMIT %(limit)s
), new AS (
    SELECT {token} AS token, row_number() OVER () AS rn FROM {source}
), pair AS (
    SELECT win.k, win.old, new.token, {free} AS free
    FROM win JOIN new ON new.rn = win.rn{taken}
    WHERE {fill}
), last AS (
    -- not max(k): PostgreSQL has no max() for uuid keys
    SELECT k FROM win ORDER BY k DESC LIMIT 1
), upd AS (
    UPDATE {table} AS t SET {col} = pair.token
    FROM pair
    WHERE t.{pk} = pair.k AND pair.free AND {t_range}
        -- a value the application changed meanwhile is the application's
        AND t.{col} IS NOT DISTINCT FROM pair.old
    RETURNING t.{pk} AS k
)
SELECT
    (SELECT count(*) FROM win),
    (SELECT k::text FROM last),
    (SELECT count(*) FROM upd),
    (SELECT count(*) FROM win WHERE old IS NULL),
    (SELECT array_agg(k::text) FROM pair WHERE NOT free),
    (SELECT array_agg(k::text) FROM pair WHERE free AND k NOT IN (SELECT k FROM upd))"""

_UUID4 = (
    # gen_random_uuid() for --generator database: made on the server, never sent
    "gen_random_uuid()"
)


def _temp_table(db_type: str) -> str:
    return "rotator_new_" + hashlib.sha256(db_type.encode()).hexdigest()[:10]


def _db_type(connection: BaseDatabaseWrapper, target: Target) -> str:
    db_type = target.field.db_type(connection)
    if db_type is None:  # resolve_target() takes only fields with a column
        raise AssertionError(f"unreachable: {target.label} has no column type")
    return db_type


def _one(cur: Any) -> Any:
    """The row of a query that always returns one (a psycopg or a Django cursor)."""
    row = cur.fetchone()
    if row is None:
        raise AssertionError("unreachable: the query returns one row")
    return row


def _binary_uuids(packed: bytes) -> bytes:
    """A whole binary COPY stream of one uuid column, built without a loop per row."""
    n = len(packed) // 16
    rows = bytearray(22 * n)
    for i, byte in enumerate(b"\x00\x01\x00\x00\x00\x10"):  # 1 field of 16 bytes
        rows[i::22] = bytes((byte,)) * n
    for i in range(16):
        rows[6 + i :: 22] = packed[i::16]
    return b"PGCOPY\n\xff\r\n\x00" + bytes(8) + bytes(rows) + b"\xff\xff"


class PostgreSQLBuilder(Builder):
    vendor = "postgresql"
    hashes_on_server = True
    blob_type = "bytea"

    def __init__(self) -> None:
        self._token_oid: dict[str, int] = {}

    def supports(self, target: Target, generator: Generator) -> str | None:
        if generator.server_side and target.field.get_internal_type() != "UUIDField":
            return "--generator database (gen_random_uuid()) only fills UUID columns"
        return None

    # SQL text (placeholders only; no value ever).

    def sql(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        *,
        lower: bool,
        keys: bool = False,
        server_side: bool = False,
        fill_nulls: bool = False,
    ) -> str:
        n = Names.of(connection, target)
        pk, col, table = n.pk, n.col, n.table
        cast = target.pk.cast_db_type(connection)
        if keys:
            where = f"{pk} = ANY(%(keys)s::{cast}[])"
            t_range = f"t.{pk} = ANY(%(keys)s::{cast}[])"
        else:
            where = f"{pk} <= %(hi)s::{cast}"
            t_range = f"t.{pk} <= (SELECT k FROM last)"
            if lower:
                where = f"{pk} > %(lo)s::{cast} AND {where}"
                t_range = f"t.{pk} > %(lo)s::{cast} AND {t_range}"
        if server_side:
            token, source = _UUID4, "generate_series(1, %(limit)s)"
        else:
            token, source = "token", f"pg_temp.{_temp_table(_db_type(connection, target))}"
        # Is the new value taken? One probe of the unique index per row: LATERAL with
        # LIMIT keeps the planner from hashing the whole table instead.
        # A new value equal to the row's old one (a low-entropy generator) is no rotation:
        # the row draws again, like a collision (on a unique column the probe sees it).
        free, taken = "new.token IS DISTINCT FROM win.old", ""
        if target.unique:
            free = "taken.hit IS NULL"
            taken = (
                f"\n    LEFT JOIN LATERAL (SELECT 1 AS hit FROM {table} AS x"
                f" WHERE x.{col} = new.token LIMIT 1) AS taken ON true"
            )
        return _BATCH.format(
            pk=pk,
            col=col,
            table=table,
            where=where,
            t_range=t_range,
            token=token,
            source=source,
            free=free,
            taken=taken,
            fill="true" if fill_nulls else "win.old IS NOT NULL",
        )

    # The session and the batch.

    def prepare_session(self, connection: BaseDatabaseWrapper, target: Target, name: str) -> None:
        db_type = _db_type(connection, target)
        table = _temp_table(db_type)
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cur:
            cur.execute("SELECT set_config('application_name', %s, false)", (name[:63],))
            cur.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {table} (token {db_type}) ON COMMIT DELETE ROWS"
            )
            cur.execute(
                "SELECT atttypid FROM pg_attribute WHERE attrelid = %s::regclass "
                "AND attname = 'token'",
                (f"pg_temp.{table}",),
            )
            oid = _one(cur)[0]
            # char(n) (bpchar) is sent in text's binary form; psycopg has no bpchar dumper.
            self._token_oid[db_type] = _TEXT_OID if oid == _BPCHAR_OID else oid

    def guard_transaction(
        self, connection: BaseDatabaseWrapper, lock_timeout: float, idle_timeout: float
    ) -> None:
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cur:
            cur.execute(
                "SELECT set_config('lock_timeout', %s, true),"
                " set_config('idle_in_transaction_session_timeout', %s, true)",
                (f"{int(lock_timeout * 1000)}ms", f"{int(idle_timeout * 1000)}ms"),
            )

    def _copy(self, cur: psycopg.Cursor, connection: Any, target: Target, tokens: Tokens) -> None:
        db_type = _db_type(connection, target)
        table = f"pg_temp.{_temp_table(db_type)}"
        cur.execute(f"DELETE FROM {table}")  # leftovers of an earlier round of this batch
        # Raw uuid4 bytes store exactly what save() would: a plain UUIDField, native uuid.
        if tokens.packed is not None and native_uuid(target, connection):
            with cur.copy(f"COPY {table} (token) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(_binary_uuids(tokens.packed))
            return
        values = self.prep_values(connection, target, tokens)
        # Binary COPY: a value that does not fit fails without being quoted in the
        # server log (text COPY's error context would show it).
        with cur.copy(f"COPY {table} (token) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([self._token_oid[db_type]])
            for value in values:
                copy.write_row((value,))

    def _run(self, cur: psycopg.Cursor, sql: str, params: dict[str, Any]) -> Outcome:
        cur.execute(sql, params)
        seen, last, rotated, nulls, collided, missed = _one(cur)
        return Outcome(seen, last, rotated, nulls, collided or [], missed or [])

    def rotate(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        window: Window,
        tokens: Tokens | None,
        fill_nulls: bool,
    ) -> Outcome:
        params: dict[str, Any] = {"hi": window.hi, "limit": window.limit}
        if window.lo is not None:
            params["lo"] = window.lo
        sql = self.sql(
            connection,
            target,
            lower=window.lo is not None,
            server_side=tokens is None,
            fill_nulls=fill_nulls,
        )
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cur:
            if tokens is not None:
                self._copy(cur, connection, target, tokens)
            return self._run(cur, sql, params)

    def rotate_keys(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        keys: list[Any],
        tokens: Tokens | None,
        fill_nulls: bool,
    ) -> Outcome:
        sql = self.sql(
            connection,
            target,
            lower=False,
            keys=True,
            server_side=tokens is None,
            fill_nulls=fill_nulls,
        )
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cur:
            if tokens is not None:
                self._copy(cur, connection, target, tokens)
            return self._run(cur, sql, {"keys": keys, "limit": len(keys)})

    def count_present(
        self, connection: BaseDatabaseWrapper, target: Target, keys: list[Any]
    ) -> int:
        n = Names.of(connection, target)
        cast = target.pk.cast_db_type(connection)
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cur:
            cur.execute(
                f"SELECT count(*) FROM {n.table} WHERE {n.pk} = ANY(%s::{cast}[])",
                (keys,),
            )
            return _one(cur)[0]

    def describe(self, connection: BaseDatabaseWrapper, target: Target, gen: Generator) -> str:
        sql = self.sql(connection, target, lower=True, server_side=gen.server_side)
        if gen.server_side:
            return sql
        table = _temp_table(_db_type(connection, target))
        return f"COPY pg_temp.{table} (token) FROM STDIN (FORMAT BINARY);\n{sql}"

    # The plan: the statistics and a block sample, never a pass over a large table.

    def plan_lock(self, connection: BaseDatabaseWrapper, target: Target) -> None:
        key = f"{target.model._meta.db_table}.{column_of(target.field)}"
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [PLAN_CLASS, key])

    def split(self, connection: BaseDatabaseWrapper, target: Target, shards: int) -> Split:
        n = Names.of(connection, target)
        pk, table = n.pk, n.table
        cast = target.pk.cast_db_type(connection)
        with connection.cursor() as cur:
            # Qualified: a bare "id" would sort by the text output column of that name.
            cur.execute(f"SELECT {pk}::text FROM {table} ORDER BY {table}.{pk} DESC LIMIT 1")
            row = cur.fetchone()
            if row is None:
                return Split(None, 0, [], [])
            high = row[0]
            cur.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
            estimate = _one(cur)[0]
            if estimate < EXACT_PLAN_ROWS:  # also -1: never analysed
                cur.execute(f"SELECT count(*) FROM {table} WHERE {pk} <= %s::{cast}", [high])
                ends = positions(_one(cur)[0], shards)
                # percentile_disc(f) is the key at position ceil(f * n): aim mid-row.
                fractions = [(end - 0.5) / ends[-1] for end in ends[:-1]]
                sample, total = "", ends[-1]
            else:
                count = max(1, shards)
                fractions = [(i + 1) / count for i in range(count - 1)]
                sample = f" TABLESAMPLE SYSTEM ({100.0 * SAMPLE_ROWS / estimate:f})"
                total = estimate
            cur.execute(
                f"SELECT (percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY {pk}))::text[] "
                f"FROM {table}{sample} WHERE {pk} <= %s::{cast}",
                [fractions, high],
            )
            quantiles = _one(cur)[0] or []
        if not sample:
            return Split(high, total, [*quantiles, high], sizes_of(ends))
        uppers = sorted(
            {key for key in quantiles if key is not None and key != high}, key=quantiles.index
        )
        uppers.append(high)
        share = sizes_of(positions(total, len(uppers)))
        return Split(high, total, uppers, share, estimated=True)

    # Liveness: a session advisory lock per shard, (class, shard id), held on the
    # worker's connection; it is released with the session, whatever kills it.

    def _advisory(self, connection: BaseDatabaseWrapper, sql: str, shard_id: int) -> Any:
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cur:
            cur.execute(sql, (ADVISORY_CLASS, shard_id))
            return _one(cur)[0]

    def try_own(self, connection: BaseDatabaseWrapper, shard_id: int) -> bool:
        sql = "SELECT pg_try_advisory_lock(%s::int4, %s::int4)"
        return bool(self._advisory(connection, sql, shard_id))

    def disown(self, connection: BaseDatabaseWrapper, shard_id: int) -> None:
        self._advisory(connection, "SELECT pg_advisory_unlock(%s::int4, %s::int4)", shard_id)

    def disown_all(self, connection: BaseDatabaseWrapper) -> None:
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cur:
            cur.execute("SELECT pg_advisory_unlock_all()")

    def owner_alive(self, connection: BaseDatabaseWrapper, shard_id: int) -> bool | None:
        sql = (
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = %s::int4::oid AND objid = %s::int4::oid AND objsubid = 2)"
        )
        return bool(self._advisory(connection, sql, shard_id))

    def backend_id(self, connection: BaseDatabaseWrapper) -> int | None:
        return connection.connection.info.backend_pid

    def blockers(
        self, connection: BaseDatabaseWrapper, backends: list[int]
    ) -> dict[int, list[int]]:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT pid, pg_blocking_pids(pid) FROM unnest(%s::int[]) AS pid", [backends]
            )
            return {pid: list(blocking) for pid, blocking in cur.fetchall() if blocking}

    # Faults, by SQLSTATE class (psycopg maps each to an exception class).

    def fault(self, exc: BaseException) -> Fault | None:
        cause = exc.__cause__ or exc
        errors = psycopg.errors
        if isinstance(cause, errors.LockNotAvailable):
            return Fault(Kind.LOCK, "a row lock was held longer than the lock timeout")
        if isinstance(cause, errors.DeadlockDetected):
            return Fault(Kind.CONFLICT, "deadlock with another transaction")
        if isinstance(cause, errors.SerializationFailure):
            return Fault(Kind.CONFLICT, "serialization failure")
        if isinstance(cause, errors.QueryCanceled):
            return Fault(Kind.TIMEOUT, "statement cancelled (statement timeout)")
        if isinstance(cause, errors.UniqueViolation):
            return Fault(Kind.COLLISION, "a new value was taken by a concurrent insert")
        if isinstance(
            cause,
            errors.AdminShutdown
            | errors.CrashShutdown
            | errors.CannotConnectNow
            | errors.IdleInTransactionSessionTimeout,
        ):
            return Fault(Kind.CONNECTION, f"the server ended the session ({cause.sqlstate})")
        if isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError):
            return Fault(Kind.CONNECTION, "the connection to the server was lost")
        return None

    def connection_id(self, connection: BaseDatabaseWrapper) -> str:
        return f"postgresql:pid={connection.connection.info.backend_pid}"

    def interrupt(self, connection: BaseDatabaseWrapper) -> None:
        raw = connection.connection
        if raw is not None and not raw.closed:
            raw.cancel_safe(timeout=2)

    # Hashing on the server with sha256(); one census query for --verify.

    def digests(self, connection: BaseDatabaseWrapper, target: Target, alias: str = "") -> Digests:
        n = Names.of(connection, target)
        text = f"convert_to({alias}{n.col}::text, 'UTF8')"
        return Digests(
            key_text=f"{alias}{n.pk}::text",
            digest=f"substring(sha256({text}) FROM 1 FOR {DIGEST_BYTES})",
            sha256=f"sha256({text})",
            param="%s",
        )

    def verify_queries(
        self, connection: BaseDatabaseWrapper, target: Target, fingerprints: str, stale_limit: int
    ) -> dict[str, str]:
        d = self.keyed(connection, target, alias="t.")
        n = verify_names(connection, target, fingerprints)
        # One hash full join counts fingerprints, rows, deleted, newborn and NULL rows.
        census = (
            f"SELECT count(f.{n.key}), count(t.k), count(*) FILTER (WHERE t.k IS NULL), "
            f"count(*) FILTER (WHERE f.{n.key} IS NULL), "
            "count(*) FILTER (WHERE t.k IS NOT NULL AND t.c IS NULL) "
            f"FROM (SELECT {d.key_text} AS k, t.{n.col} AS c FROM {n.table} t) t "
            f"FULL JOIN (SELECT {n.key} FROM {n.fp} WHERE run_id = {d.param}) f "
            f"ON f.{n.key} = t.k"
        )
        return {**stale_queries(d, n, stale_limit), "census": census}

    # The proof: the key by a one-row binary COPY, dropped at commit (nothing left behind).

    insert_ignore = ("INSERT", " ON CONFLICT DO NOTHING")

    def load_proof_key(self, connection: BaseDatabaseWrapper, target: Target, key: str) -> None:
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cur:
            # JIT (on by default on a stock server) compiled the small fingerprint INSERT of
            # every batch anew; off for this transaction only.
            cur.execute("SELECT set_config('jit', 'off', true)")
            cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {PROOF_TABLE} (k text) ON COMMIT DROP")
            cur.execute(f"DELETE FROM pg_temp.{PROOF_TABLE}")
            with cur.copy(f"COPY pg_temp.{PROOF_TABLE} (k) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types([_TEXT_OID])
                copy.write_row((key,))

    def proof_digest(self, connection: BaseDatabaseWrapper, target: Target, alias: str) -> str:
        col = Names.of(connection, target).col
        # The key as an InitPlan (computed once): a join with the key table, whose size
        # the planner cannot know, once made it a nested loop over every pair of rows.
        key = f"(SELECT k FROM pg_temp.{PROOF_TABLE})"
        hashed = f"sha256(convert_to({key} || {alias}{col}::text, 'UTF8'))"
        bits = PROOF_HEX * 4
        return f"('x' || substr(encode({hashed}, 'hex'), 1, {PROOF_HEX}))::bit({bits})::bigint"

    def window_bound(
        self, connection: BaseDatabaseWrapper, target: Target, text: str
    ) -> tuple[str, Any]:
        return self.high_water_bound(connection, target, text)

    def analyze_fingerprints(self, connection: BaseDatabaseWrapper, fingerprints: str) -> None:
        # Without statistics the planner took the fingerprints for a tiny table (613 s).
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(fingerprints)}")

    def high_water_bound(
        self, connection: BaseDatabaseWrapper, target: Target, text: str
    ) -> tuple[str, Any]:
        # The database's own text of the key, cast back on the server.
        return f"%s::{target.pk.cast_db_type(connection)}", text

    def load_leaked(self, cursor: Any, name: str, values: Iterator[Any]) -> int:
        lines = 0
        with cursor.copy(f"COPY {name} (v) FROM STDIN") as copy:
            for value in values:
                copy.write_row((value,))
                lines += 1
        cursor.execute(f"ANALYZE {name}")
        return lines

    # The server.

    def check_replication_lag(
        self, connection: BaseDatabaseWrapper, alias: str, limit: float
    ) -> None:
        with connection.cursor() as cursor:
            cursor.execute(CAN_READ_SQL)
            (can_read,) = cursor.fetchone()
        if not can_read:
            user = connection.settings_dict.get("USER") or "the database user"
            raise RotatorError(
                f"--max-replication-lag needs to read pg_stat_replication, which {user!r} may "
                f"not see; run GRANT pg_monitor TO {user} (or drop the flag)"
            )

    def replication_lag(self, connection: BaseDatabaseWrapper) -> float | None:
        with connection.cursor() as cursor:
            cursor.execute(LAG_SQL)
            (lag,) = cursor.fetchone()
        return lag

    def describe_location(self, connection: BaseDatabaseWrapper) -> str:
        pgdata = connection.settings_dict.get("PGDATA")
        if pgdata:
            return f"embedded PostgreSQL in {pgdata}"
        return super().describe_location(connection)
