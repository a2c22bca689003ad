"""PostgreSQL: one set-based statement per batch; new values arrive by COPY.

New values never travel as a bind parameter or in SQL text: PostgreSQL logs
those (``log_min_duration_statement``, ``log_statement``), and a unique
violation's DETAIL would log a live value. They are COPYed (binary) into a
temporary table made in the batch's own transaction (``ON COMMIT DROP``), which
the server log never shows, and the batch statement skips any row whose new
value is already taken instead of failing: those rows get other values in the
same transaction (``rotate_keys``). For a unique column, the batch first
reserves its values by keyed hash (``rotator_reservation``) so that a second
worker drawing the same value waits for the first and then sees it taken.

Nothing of a batch relies on an earlier transaction of its connection, and
nothing it sets outlives it (``set_config(..., true)``, the table dropped at
commit), so it runs through a transaction pooler (PgBouncer) as it runs direct.

The batch statement itself, and how it steps around rows the application
holds, is in ``pgbatch.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator
from typing import Any

import psycopg
from django.conf import settings
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.errors import RotatorError
from rotator.faults import Fault, Kind
from rotator.generators import Generator, Tokens
from rotator.sql import pgbatch
from rotator.sql.base import (
    Builder,
    ConnectionUse,
    Fingerprinting,
    Outcome,
    Split,
    Window,
    positions,
    sizes_of,
    verify_names,
)
from rotator.sql.connections import SESSION_KEYS
from rotator.sql.digests import (
    DIGEST_BYTES,
    PROOF_HEX,
    PROOF_ROWS,
    PROOF_TABLE,
    Digests,
    stale_queries,
)
from rotator.sql.names import Names, column_of
from rotator.sql.replication import CAN_READ_SQL, LAG_SQL
from rotator.sql.revoke_postgresql import RevokePostgreSQL
from rotator.target import Target
from rotator.values import native_uuid

_BPCHAR_OID, _TEXT_OID = 1042, 25
_RESERVE = (
    # Sorted: two batches reserving the same values take them in one order (no deadlock).
    "INSERT INTO rotator_reservation (digest) SELECT h FROM {table} WHERE h IS NOT NULL "
    "ORDER BY h ON CONFLICT DO NOTHING"
)
_UNRESERVE = "DELETE FROM rotator_reservation AS r USING {table} AS t WHERE r.digest = t.h"

#: Rows by the statistics; -1 if never analysed. A partitioned table has no
#: reltuples of its own: the sum of its leaf partitions' (those analysed).
_ESTIMATE = """\
SELECT (CASE WHEN c.relkind <> 'p' THEN c.reltuples ELSE (
    SELECT coalesce(sum(leaf.reltuples) FILTER (WHERE leaf.reltuples >= 0), -1)
    FROM pg_partition_tree(c.oid) AS tree JOIN pg_class AS leaf ON leaf.oid = tree.relid
    WHERE tree.isleaf
) END)::bigint
FROM pg_class AS c WHERE c.oid = %s::regclass"""

#: The first key of the rotator's advisory locks ("rot"); the second is the shard id.
ADVISORY_CLASS = 0x726F74
#: Advisory transaction lock class for planning ("rop"); the second key hashes the column.
PLAN_CLASS = 0x726F70
#: Up to this many rows (by the statistics) a plan is exact; above, it samples.
EXACT_PLAN_ROWS = 1_000_000
SAMPLE_ROWS = 50_000


#: max_connections, the slots reserved for superusers (and pg_use_reserved_connections,
#: PostgreSQL 16+), and the client connections open now.
CONNECTION_USE_SQL = (
    "SELECT current_setting('max_connections')::int, "
    "current_setting('superuser_reserved_connections')::int "
    "+ coalesce(nullif(current_setting('reserved_connections', true), '')::int, 0), "
    "(SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend')"
)


def _temp_table(db_type: str) -> str:
    return "rotator_new_" + hashlib.sha256(db_type.encode()).hexdigest()[:10]


def _db_type(connection: BaseDatabaseWrapper, target: Target) -> str:
    db_type = target.field.db_type(connection)
    if db_type is None:  # resolve_target() takes only fields with a column
        raise AssertionError(f"unreachable: {target.label} has no column type")
    return db_type


def _unbounded(db_type: str) -> str:
    """The column type without its length limit: varchar(16) -> varchar, char(8) -> bpchar."""
    base = re.fullmatch(
        r"\s*(varchar|character varying|char|character|bpchar)\s*\(\s*\d+\s*\)\s*",
        db_type,
        re.IGNORECASE,
    )
    if base is None:
        return db_type
    return "varchar" if base.group(1).lower() in ("varchar", "character varying") else "bpchar"


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


#: Whether a database alias goes through a pooler (PostgreSQLBuilder.pooled()).
_POOLED: dict[str, bool] = {}


def _reservation_key(target: Target) -> bytes:
    """The key of reservation hashes: every process of the project derives the same one,
    and a copy of the database alone (without SECRET_KEY) cannot test a guess."""
    column = f"{target.model._meta.db_table}.{column_of(target.field)}"
    return hmac.digest(
        settings.SECRET_KEY.encode(), b"rotator reservation " + column.encode(), "sha256"
    )


def _reservation(key: bytes, value: Any) -> str:
    data = value if isinstance(value, bytes) else str(value).encode()
    return hmac.digest(key, data, "sha256")[:16].hex()


#: --verify's copy of a run's fingerprints (``copy_checked``), in pg_temp: a bare name,
#: so that quoting it keeps it one identifier.
_CHECKED = "rotator_checked_proof"


class PostgreSQLBuilder(RevokePostgreSQL, Builder):
    vendor = "postgresql"
    hashes_on_server = True
    blob_type = "bytea"
    has_locks = True

    def __init__(self) -> None:
        self._token_oid: dict[str, int] = {}
        self._names: dict[int, str] = {}  # id(connection) -> application_name

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
        skip: bool = False,
        fingerprints: Fingerprinting | None = None,
        probe: bool = True,
    ) -> str:
        """The batch statement; ``skip``: its form that skips rows held elsewhere;
        ``fingerprints``: it also fingerprints the window's old values; ``probe``: it
        skips new values already taken (see ``_random_uuids``)."""
        source = None if server_side else f"pg_temp.{_temp_table(_db_type(connection, target))}"
        fingerprint = writers = None
        if fingerprints is not None:
            qn = connection.ops.quote_name
            if not keys:
                # One row per window (arrays), not one per row: HAVING skips an empty window.
                fingerprint = (
                    f"INSERT INTO {qn(fingerprints.table)} (run_id, size, keys, digests) "
                    f"SELECT {int(fingerprints.run_id)}, count(*), array_agg(win.k::text), "
                    f"array_agg({self._keyed('win.old')}) FROM win HAVING count(*) > 0"
                )
            writers = (
                f"INSERT INTO {qn(fingerprints.writers)} (run_id, xid, top) "
                # One row: every row version a statement makes has its (sub)transaction's
                # xid (a GROUP BY over the window's rows cost 1.5% of the batch).
                f"SELECT {int(fingerprints.writer_run)}, x::text::bigint, txid_current() "
                "FROM upd LIMIT 1"
            )
        return pgbatch.statement(
            connection,
            target,
            lower=lower,
            keys=keys,
            source=source,
            fill_nulls=fill_nulls,
            skip=skip,
            fingerprint=fingerprint,
            writers=writers,
            probe=probe,
        )

    # The session and the batch.

    def prepare_session(self, connection: BaseDatabaseWrapper, target: Target, name: str) -> None:
        # Nothing is set on the session: behind a pooler it is not ours to keep.
        db_type = _db_type(connection, target)
        self._names[id(connection)] = name[:63]
        self.adapt(connection)
        if db_type not in self._token_oid:
            with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cur:
                cur.execute("SELECT %s::regtype::oid", (db_type,))
                oid = _one(cur)[0]
            # char(n) (bpchar) is sent in text's binary form; psycopg has no bpchar dumper.
            self._token_oid[db_type] = _TEXT_OID if oid == _BPCHAR_OID else oid

    def adapt(self, connection: BaseDatabaseWrapper) -> None:
        if self.pooled(connection) and "prepare_threshold" not in connection.settings_dict.get(
            "OPTIONS", {}
        ):
            # A prepared statement lives on one server connection, and the next
            # transaction may run on another: psycopg must not prepare (unless the
            # user set prepare_threshold, e.g. for PgBouncer 1.21+'s own support).
            connection.connection.prepare_threshold = None

    def pooled(self, connection: BaseDatabaseWrapper) -> bool:
        # Per alias: one alias is one address, so one answer (asked once per process).
        alias = connection.alias
        if alias not in _POOLED:
            connection.ensure_connection()
            raw = connection.connection
            with connection.wrap_database_errors, psycopg.Cursor(raw) as cur:
                cur.execute("SELECT pg_backend_pid()")
                # A pooler answers the startup with a backend id of its own.
                _POOLED[alias] = _one(cur)[0] != raw.info.backend_pid
        return _POOLED[alias]

    def session_tables(self, connection: BaseDatabaseWrapper) -> bool:
        """Whether a batch's temporary tables may live for the session (made once, emptied
        at each commit) rather than for its transaction (made and dropped every batch):
        on a server connection of our own (direct, or in Django's pool), not a pooler's."""
        return not self.pooled(connection)

    def end_session(self, connection: BaseDatabaseWrapper) -> None:
        # The key must not stay in a session that Django's pool hands to its next user.
        raw = connection.connection
        if SESSION_KEYS.get(raw) is None:
            return
        SESSION_KEYS.forget(raw)
        with connection.wrap_database_errors, psycopg.Cursor(raw) as cur:
            cur.execute(f"DROP TABLE IF EXISTS pg_temp.{PROOF_TABLE}")

    def guard_transaction(
        self, connection: BaseDatabaseWrapper, lock_timeout: float, idle_timeout: float
    ) -> None:
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cur:
            # jit off: a batch is ~50 ms of work, which JIT would compile for ~500 ms
            # (jit_above_cost is easily passed by the estimates of a large batch).
            cur.execute(
                "SELECT set_config('lock_timeout', %s, true),"
                " set_config('idle_in_transaction_session_timeout', %s, true),"
                " set_config('jit', 'off', true)",
                (f"{int(lock_timeout * 1000)}ms", f"{int(idle_timeout * 1000)}ms"),
            )

    def _copy(
        self, cur: psycopg.Cursor, connection: Any, target: Target, tokens: Tokens | None
    ) -> str | None:
        """In the batch's transaction: name it for operators, COPY the new values into a
        table dropped at commit, reserve them; return the table if values were reserved."""
        name = self._names.get(id(connection), "rotator")
        local_name = psycopg.sql.Literal(name).as_string(connection.connection)
        if tokens is None:
            cur.execute(f"SELECT set_config('application_name', {local_name}, true)")
            return None
        db_type = _db_type(connection, target)
        table = f"pg_temp.{_temp_table(db_type)}"
        # Raw uuid4 bytes store exactly what save() would: a plain UUIDField, native uuid.
        # 122 random bits: two workers drawing one value is negligible (README), so
        # these are not reserved.
        packed = self._random_uuids(connection, target, tokens)
        reserve = target.unique and not packed
        # No parameters: one round trip. On a connection of our own the table is made once
        # and emptied at each commit; otherwise it is dropped at commit (nothing left on a
        # pooled server connection). Either way a later round of this transaction
        # (rotate_keys) finds the leftovers of an earlier one, deleted here.
        on_commit = "DELETE ROWS" if self.session_tables(connection) else "DROP"
        cur.execute(
            f"SELECT set_config('application_name', {local_name}, true),"
            " set_config('client_min_messages', 'warning', true);"
            f" CREATE TEMP TABLE IF NOT EXISTS {_temp_table(db_type)}"
            f" (token {db_type}{', h varchar(32)' if reserve else ''}) ON COMMIT {on_commit};"
            # Only where values are reserved: an unanalysed table's row estimate (which the
            # batch's plan starts from) shrinks with the width of its columns.
            + (f" ALTER TABLE {table} ADD COLUMN IF NOT EXISTS h varchar(32);" if reserve else "")
            + f" DELETE FROM {table}"
        )
        if packed and tokens.packed is not None:
            with cur.copy(f"COPY {table} (token) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(_binary_uuids(tokens.packed))
            return None
        values = self.prep_values(connection, target, tokens)
        # Binary COPY: a value that does not fit fails without being quoted in the
        # server log (text COPY's error context would show it).
        oid = self._token_oid[db_type]
        if not reserve:
            with cur.copy(f"COPY {table} (token) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types([oid])
                for value in values:
                    copy.write_row((value,))
            return None
        key = _reservation_key(target)
        with cur.copy(f"COPY {table} (token, h) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([oid, _TEXT_OID])
            for value in values:
                copy.write_row((value, _reservation(key, value)))
        cur.execute(_RESERVE.format(table=table))
        return table

    def _unreserve(self, cur: psycopg.Cursor, table: str | None) -> None:
        # Deleted before commit: a batch waiting on these rows goes on at our commit,
        # and then its statement's snapshot sees the values taken.
        if table is not None:
            cur.execute(_UNRESERVE.format(table=table))

    def _run(self, cur: psycopg.Cursor, sql: str, params: dict[str, Any]) -> Outcome:
        cur.execute(sql, params)
        seen, last, rotated, nulls, collided, missed, held = _one(cur)
        return Outcome(seen, last, rotated, nulls, collided or [], missed or [], held)

    def _window(self, cur: psycopg.Cursor, sql: tuple[str, str], params: dict[str, Any]) -> Outcome:
        """Run the fast form of the batch; if a row is held elsewhere, the skip form."""
        cur.execute("SAVEPOINT rotator_batch")
        # A lock wait fails soon: no waiting on the application while rows are held.
        cur.execute(
            "SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)",
            (pgbatch.FAST_LOCK_TIMEOUT,),
        )
        timeout = _one(cur)[0]
        try:
            outcome = self._run(cur, sql[0], params)
        except psycopg.errors.LockNotAvailable:
            cur.execute("ROLLBACK TO SAVEPOINT rotator_batch")  # also the lock timeout
            return self._run(cur, sql[1], params)
        cur.execute("RELEASE SAVEPOINT rotator_batch")
        cur.execute("SELECT set_config('lock_timeout', %s, true)", (timeout,))
        return outcome

    def rotate(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        window: Window,
        tokens: Tokens | None,
        fill_nulls: bool,
        fingerprints: Fingerprinting | None = None,
    ) -> Outcome:
        params: dict[str, Any] = {"hi": window.hi, "limit": window.limit}
        lower = window.lo is not None
        if lower:
            params["lo"] = window.lo
        fast, skip = (
            self.sql(
                connection,
                target,
                lower=lower,
                server_side=tokens is None,
                fill_nulls=fill_nulls,
                skip=skip,
                fingerprints=fingerprints,
                probe=not self._random_uuids(connection, target, tokens),
            )
            for skip in (False, True)
        )
        n = Names.of(connection, target)
        where, _ = pgbatch.ranges(connection, target, lower=lower, keys=False)
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cur:
            # The one lock wait of a batch: on the window's first row, holding no other.
            cur.execute(
                pgbatch.FIRST.format(table=n.table, col=n.col, where=where, pk=n.pk), params
            )
            first = cur.fetchone()
            params["keep"] = first[0] if first is not None and first[1] else None
            table = self._copy(cur, connection, target, tokens)
            outcome = self._window(cur, (fast, skip), params)
            self._unreserve(cur, table)
            return outcome

    def rotate_keys(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        keys: list[Any],
        tokens: Tokens | None,
        fill_nulls: bool,
        fingerprints: Fingerprinting | None = None,
    ) -> Outcome:
        sql = self.sql(
            connection,
            target,
            lower=False,
            keys=True,
            server_side=tokens is None,
            fill_nulls=fill_nulls,
            fingerprints=fingerprints,
            probe=not self._random_uuids(connection, target, tokens),
        )
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cur:
            table = self._copy(cur, connection, target, tokens)
            outcome = self._run(cur, sql, {"keys": keys, "limit": len(keys), "keep": None})
            self._unreserve(cur, table)
            return outcome

    def lock_free(
        self, connection: BaseDatabaseWrapper, target: Target, keys: list[str]
    ) -> list[str]:
        n = Names.of(connection, target)
        sql = pgbatch.LOCK_FREE.format(
            pk=n.pk, table=n.table, cast=target.pk.cast_db_type(connection)
        )
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cur:
            cur.execute(sql, {"keys": keys})
            return [key for (key,) in cur.fetchall()]

    def _random_uuids(
        self, connection: BaseDatabaseWrapper, target: Target, tokens: Tokens | None
    ) -> bool:
        """Whether the new values are uuid4s (gen_random_uuid(), or os.urandom bytes into a
        native uuid column): 122 random bits, so one already taken is as likely as two
        workers drawing the same one (they are not reserved either, README). Their
        statement does not probe the unique index first: the UPDATE's own insert into
        it is the check, and a UniqueViolation is retried like any collision. The probe
        was a third of the batch statement's time."""
        if tokens is None:
            return True
        return tokens.packed is not None and native_uuid(target, connection)

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

    def row_estimate(self, connection: BaseDatabaseWrapper, target: Target) -> int:
        with connection.cursor() as cur:
            cur.execute(_ESTIMATE, [Names.of(connection, target).table])
            estimate = int(_one(cur)[0])
        if estimate < EXACT_PLAN_ROWS:  # also -1: never analysed
            return super().row_estimate(connection, target)
        return estimate

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
            cur.execute(_ESTIMATE, [table])
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
                sample = f" TABLESAMPLE SYSTEM ({min(100.0, 100.0 * SAMPLE_ROWS / estimate):f})"
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

    # Liveness on direct connections (claims.py): a session advisory lock per shard,
    # (class, shard id), held on the worker's connection; it is released with the
    # session, whatever kills it. Never taken behind a pooler (pooled()).

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
            # Advisory locks are per database: another database's run may use the same ids.
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
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
            # DISTINCT: a run restarted with --restart fingerprints some rows twice.
            f"FULL JOIN (SELECT DISTINCT {n.key} FROM {n.fp} WHERE run_id = {d.param}) f "
            f"ON f.{n.key} = t.k"
        )
        return {**stale_queries(d, n, stale_limit), "census": census}

    # The proof: the key by a one-row binary COPY, dropped at commit (nothing left behind).

    def fingerprints_in_batch(self, connection: BaseDatabaseWrapper) -> bool:
        # In the batch statement itself (pgbatch.statement's ``fingerprint``).
        return True

    def load_proof_key(
        self, connection: BaseDatabaseWrapper, target: Target, key: str, batches: bool = False
    ) -> None:
        raw = connection.connection
        held = hashlib.sha256(key.encode()).hexdigest()
        session = batches and self.session_tables(connection)
        if session and SESSION_KEYS.get(raw) == held:
            # Django's errors: a lost connection here is a fault the worker reconnects from.
            with connection.wrap_database_errors:
                if self._has_key_table(raw):
                    return
        SESSION_KEYS.forget(raw)
        # Batches on a connection of our own keep the key for the session (one COPY per
        # connection, not per batch); everything else drops it at commit.
        table = (
            f"CREATE TEMP TABLE {PROOF_TABLE} (k text)"
            if session
            else f"CREATE TEMP TABLE {PROOF_TABLE} (k text) ON COMMIT DROP"
        )
        with connection.wrap_database_errors, psycopg.Cursor(raw) as cur:
            cur.execute(
                # JIT (on by default on a stock server) compiled the small fingerprint
                # INSERT of every batch anew; off for this transaction only.
                "SELECT set_config('jit', 'off', true),"
                " set_config('client_min_messages', 'warning', true);"
                f" DROP TABLE IF EXISTS pg_temp.{PROOF_TABLE}; {table}"
            )
            with cur.copy(f"COPY pg_temp.{PROOF_TABLE} (k) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types([_TEXT_OID])
                copy.write_row((key,))
        if session:
            # Only once it is committed: a batch rolled back takes the table with it.
            transaction.on_commit(lambda: SESSION_KEYS.set(raw, held), using=connection.alias)

    def _has_key_table(self, raw: Any) -> bool:
        # One cheap round trip: a pool's reset (DISCARD ALL) may have dropped it.
        with psycopg.Cursor(raw) as cur:
            cur.execute(f"SELECT to_regclass('pg_temp.{PROOF_TABLE}') IS NOT NULL")
            return bool(_one(cur)[0])

    def proof_digest(self, connection: BaseDatabaseWrapper, target: Target, alias: str) -> str:
        return self._keyed(f"{alias}{Names.of(connection, target).col}")

    def _keyed(self, value: str) -> str:
        # The key as an InitPlan (computed once): a join with the key table, whose size
        # the planner cannot know, once made it a nested loop over every pair of rows.
        key = f"(SELECT k FROM pg_temp.{PROOF_TABLE})"
        hashed = f"sha256(convert_to({key} || {value}::text, 'UTF8'))"
        # The first PROOF_HEX hex digits as a bigint: the first 8 bytes, shifted right by
        # the bits not kept and masked (>> copies the sign bit). Hex-encoding 8 bytes,
        # not 32, makes the hash a fifth cheaper.
        shift = DIGEST_BYTES * 8 - PROOF_HEX * 4
        first = f"('x' || encode(substring({hashed} FROM 1 FOR {DIGEST_BYTES}), 'hex'))::bit(64)"
        return f"(({first}::bigint >> {shift}) & {(1 << PROOF_HEX * 4) - 1})"

    def finish_check(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        fingerprints: str,
        writers: str,
        limit: int,
    ) -> str | None:
        n, qn = Names.of(connection, target), connection.ops.quote_name
        # A row whose version one of the run's writers made holds the value that writer
        # gave it: only the others are hashed (OFFSET 0: the xmin test comes first). When
        # the run spans 2^31 transactions a 32-bit xmin may have come round: hash them all.
        return (
            f"WITH wr AS MATERIALIZED (SELECT xid, top FROM {qn(writers)} WHERE run_id = %s), "
            "fresh AS (SELECT coalesce(txid_snapshot_xmax(txid_current_snapshot()) - min(top)"
            " < 2147483648, false) AS ok FROM wr) "
            f"SELECT t.{n.pk}::text FROM (SELECT {n.pk}, {n.col} FROM {n.table} AS t "
            # xid against xid: no conversion of every row's xmin (twice as fast).
            "WHERE NOT (SELECT ok FROM fresh) OR t.xmin NOT IN (SELECT xid::text::xid FROM wr) "
            f"OFFSET 0) AS t WHERE {self.proof_digest(connection, target, 't.')} IN "
            f"(SELECT digest FROM {qn(fingerprints)} WHERE run_id = %s AND digest IS NOT NULL) "
            f"ORDER BY t.{n.pk} LIMIT {int(limit)}"
        )

    def window_bound(
        self, connection: BaseDatabaseWrapper, target: Target, text: str
    ) -> tuple[str, Any]:
        return self.high_water_bound(connection, target, text)

    def analyze_fingerprints(self, connection: BaseDatabaseWrapper, tables: list[str]) -> None:
        # Without statistics the planner took the fingerprints for a tiny table (613 s).
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {', '.join(map(connection.ops.quote_name, tables))}")

    def checked_relation(self, relation: str) -> str:
        return _CHECKED

    def copy_checked(self, connection: BaseDatabaseWrapper, relation: str, run_id: int) -> None:
        # To the planner an unnested array is 10 rows, so every statement over the view
        # took a million fingerprints for a thousand (hash tables spilling in dozens of
        # batches: twice as slow). A copy with statistics, dropped at commit, costs
        # 0.4 s per million and gets hash joins of the right size.
        qn = connection.ops.quote_name
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{_CHECKED}")
            cursor.execute(
                f"CREATE TEMP TABLE {_CHECKED} ON COMMIT DROP AS SELECT run_id, {qn('key')}, "
                f"digest FROM {qn(relation)} WHERE run_id = {int(run_id)}"
            )
            cursor.execute(f"ANALYZE pg_temp.{_CHECKED}")

    def proof_array_type(self, connection: BaseDatabaseWrapper, element: str) -> str:
        return f"{element}[]"

    def proof_views(self, fingerprints: str, sets: str) -> list[tuple[str, str]]:
        # The run_id a check asks for is pushed into both arms of the UNION ALL.
        view = (
            f'CREATE VIEW {PROOF_ROWS} AS SELECT run_id, "key", digest FROM {fingerprints} '
            f'UNION ALL SELECT s.run_id, f."key", f.digest FROM {sets} AS s, '
            'unnest(s.keys, s.digests) AS f("key", digest)'
        )
        # The digests are random: compressing them is wasted work (keys are left to it).
        # No statistics of the arrays' elements: ANALYZE read every one (45 ms per
        # million) for estimates no check uses.
        storage = (
            f"ALTER TABLE {sets} ALTER COLUMN digests SET STORAGE EXTERNAL, "
            "ALTER COLUMN keys SET STATISTICS 0, ALTER COLUMN digests SET STATISTICS 0"
        )
        return [(view, f"DROP VIEW {PROOF_ROWS}"), (storage, "SELECT 1")]

    def high_water_bound(
        self, connection: BaseDatabaseWrapper, target: Target, text: str
    ) -> tuple[str, Any]:
        # The database's own text of the key, cast back on the server.
        return f"%s::{target.pk.cast_db_type(connection)}", text

    def leaked_table(
        self, connection: BaseDatabaseWrapper, target: Target, cursor: Any, name: str, hashed: bool
    ) -> None:
        # No length limit: a dump line longer than the column must not fail the load
        # (the values are checked first, and this is the second line of defence).
        column_type = "bytea" if hashed else _unbounded(_db_type(connection, target))
        # pg_temp: never a table of that name in the application's schema.
        cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
        cursor.execute(f"CREATE TEMP TABLE {name} (v {column_type})")

    def load_leaked(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        cursor: Any,
        name: str,
        values: Iterator[Any],
        hashed: bool,
    ) -> int:
        cursor.execute(
            "SELECT atttypid FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'v'",
            (f"pg_temp.{name}",),
        )
        oid = _one(cursor)[0]
        lines = 0
        # Binary COPY: a value the column refuses fails without being quoted (text
        # COPY's error context, "COPY t, line 2, column v: ...", would show it).
        with cursor.copy(f"COPY {name} (v) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([_TEXT_OID if oid == _BPCHAR_OID else oid])
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

    def connection_use(self, connection: BaseDatabaseWrapper) -> ConnectionUse | None:
        # Every role sees every backend's type in pg_stat_activity (only the query text
        # is hidden); background workers and WAL senders have slots of their own.
        with connection.cursor() as cursor:
            cursor.execute(CONNECTION_USE_SQL)
            maximum, reserved, in_use = cursor.fetchone()
        return ConnectionUse(maximum=maximum, reserved=reserved, in_use=in_use)

    def describe_location(self, connection: BaseDatabaseWrapper) -> str:
        pgdata = connection.settings_dict.get("PGDATA")
        if pgdata:
            return f"embedded PostgreSQL in {pgdata}"
        return super().describe_location(connection)
