"""MariaDB and MySQL: one UPDATE per batch, and no new value ever in SQL text.

No new value may be a bind parameter (see load.py). Two ways in instead:

- ``uuid4`` (or ``--generator database``) into a plain UUIDField where the
  server has ``RANDOM_BYTES()`` (MariaDB 10.10+, MySQL): the server makes each
  value from its CSPRNG, the version and variant bits set in SQL.
- Any other generator: the values stream through ``LOAD DATA LOCAL INFILE``
  from a pipe into a session temporary table; rows whose new value is already
  taken are marked there first and get other values (``rotate_keys``).

The builder is the registry's entry; the work is in one module per job:
batch.py (the batch statements), load.py (LOAD DATA from a pipe), plan.py
(planning), liveness.py (named locks, interrupting), errors.py (error
numbers), proof.py (MariaDB's fingerprint sets and their views).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from django.db import connections, models
from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.errors import RotatorError
from rotator.faults import Fault
from rotator.generators import Generator, Tokens
from rotator.sql.base import (
    Builder,
    ConnectionUse,
    Fingerprinting,
    Outcome,
    Split,
    Window,
    verify_names,
)
from rotator.sql.connections import SESSION_KEYS
from rotator.sql.digests import (
    DIGEST_BYTES,
    PROOF_DIGESTS,
    PROOF_HEX,
    PROOF_TABLE,
    Digests,
    stale_queries,
)
from rotator.sql.mysql import batch, errors, leaked, liveness, plan, proof
from rotator.sql.mysql.batch import (
    HEAP_BYTES,
    BatchNames,
    create_sql,
    engine,
    has_random_bytes,
    mysql,
    window_sql,
)
from rotator.sql.mysql.errors import MySQLdb
from rotator.sql.mysql.load import load_from_pipe
from rotator.sql.names import Names
from rotator.sql.revoke_mysql import RevokeMySQL
from rotator.target import Target


class MySQLBuilder(RevokeMySQL, Builder):
    vendor = "mysql"
    concurrent_writers = True
    hashes_on_server = True

    def supports(self, target: Target, generator: Generator) -> str | None:
        if generator.server_side:
            if type(target.field) is not models.UUIDField:
                return "--generator database (RANDOM_BYTES()) only fills plain UUID columns"
            if not has_random_bytes(connections[target.alias]):
                return "--generator database needs RANDOM_BYTES() (MariaDB 10.10+ or MySQL)"
        return None

    def key_param(self, target: Target, text: str) -> Any:
        # An integer key compared with a string would be compared as a double.
        integer = _integer_key(target)
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
            for sql in create_sql(BatchNames.of(connection, target), engine(connection, target)):
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
        if mysql(connection).mysql_is_mariadb:
            sql += f", idle_transaction_timeout = {guards[1]}"
        with connection.wrap_database_errors, contextlib.closing(raw.cursor()) as cur:
            cur.execute(sql)
        raw._rotator_guards = guards

    def _values(
        self, connection: BaseDatabaseWrapper, target: Target, tokens: Tokens | None
    ) -> Callable[[], list[Any]] | None:
        """The values to load (prepared only once the window has rows), or None where the
        server makes them."""
        if tokens is None or batch.server_makes_values(connection, target, tokens):
            return None
        return lambda: self.prep_values(connection, target, tokens)

    def rotate(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        window: Window,
        tokens: Tokens | None,
        fill_nulls: bool,
        fingerprints: Fingerprinting | None = None,
    ) -> Outcome:
        n = BatchNames.of(connection, target)
        lower = [] if window.lo is None else [self.key_param(target, window.lo)]
        params = [*lower, self.key_param(target, window.hi), window.limit]
        value = batch.value_sql(connection, target, tokens)
        sql = window_sql(n, lower=window.lo is not None, value=value)
        values = self._values(connection, target, tokens)
        lock = batch.Lock(
            first=(batch.first_sql(n, lower=bool(lower)), params[:-1]),
            rest=(
                batch.lock_sql(n, lower=bool(lower)),
                lambda last: [*lower, self.key_param(target, last), window.limit],
            ),
        )
        write = None if fingerprints is None else self._set_writer(connection, target, fingerprints)
        return batch.run_batch(
            connection, target, (sql, params), values, fill_nulls, lock, fingerprint=write
        )

    def _set_writer(
        self, connection: BaseDatabaseWrapper, target: Target, fingerprints: Fingerprinting
    ) -> Callable[[Any], None]:
        """The batch's window table as one FingerprintSet row (MariaDB)."""
        build, insert = proof.set_sql(
            connection.ops.quote_name(fingerprints.table),
            BatchNames.of(connection, target).window,
            _integer_key(target),
            batch.native_uuid(connection, target),
        )
        raw = connection.connection

        def write(cur: Any) -> None:
            cur.execute(build)
            proof.refuse_cut(cur, raw)
            try:
                cur.execute(insert, [fingerprints.run_id])
            except MySQLdb.MySQLError as exc:  # strict: an error (1048 for the NULL)
                if proof.is_cut(exc):
                    raise proof.incomplete() from None
                raise
            proof.refuse_cut(cur, raw)

        return write

    def rotate_keys(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        keys: list[Any],
        tokens: Tokens | None,
        fill_nulls: bool,
        fingerprints: Fingerprinting | None = None,
    ) -> Outcome:
        n = BatchNames.of(connection, target)
        params = [self.key_param(target, str(k)) for k in keys]
        value = batch.value_sql(connection, target, tokens)
        sql = window_sql(n, lower=False, keys=len(keys), value=value)
        values = self._values(connection, target, tokens)
        return batch.run_batch(connection, target, (sql, params), values, fill_nulls)

    def lock_free(
        self, connection: BaseDatabaseWrapper, target: Target, keys: list[str]
    ) -> list[str]:
        n = BatchNames.of(connection, target)
        sql = batch.lock_free_sql(n, len(keys), self.digests(connection, target, "t.").key_text)
        with (
            connection.wrap_database_errors,
            contextlib.closing(connection.connection.cursor()) as cur,
        ):
            cur.execute(sql, [self.key_param(target, str(k)) for k in keys])
            return [str(key) for (key,) in cur.fetchall()]

    def count_present(
        self, connection: BaseDatabaseWrapper, target: Target, keys: list[Any]
    ) -> int:
        n = Names.of(connection, target)
        marks = ", ".join(["%s"] * len(keys))
        with (
            connection.wrap_database_errors,
            contextlib.closing(connection.connection.cursor()) as cur,
        ):
            cur.execute(
                f"SELECT COUNT(*) FROM {n.table} WHERE {n.pk} IN ({marks})",
                [self.key_param(target, str(k)) for k in keys],
            )
            return int(cur.fetchone()[0])

    def describe(self, connection: BaseDatabaseWrapper, target: Target, gen: Generator) -> str:
        return batch.describe(connection, target, gen)

    # The plan.

    def plan_lock(self, connection: BaseDatabaseWrapper, target: Target) -> None:
        plan.plan_lock(connection, target)

    def split(self, connection: BaseDatabaseWrapper, target: Target, shards: int) -> Split:
        return plan.split(connection, target, shards, lambda text: self.key_param(target, text))

    # Liveness: a named lock per shard, held by the worker's session, beside the lease.

    has_locks = True

    def try_own(self, connection: BaseDatabaseWrapper, shard_id: int) -> bool:
        return liveness.shard_lock(connection, "SELECT GET_LOCK(%s, 0)", shard_id) == 1

    def disown(self, connection: BaseDatabaseWrapper, shard_id: int) -> None:
        liveness.shard_lock(connection, "SELECT RELEASE_LOCK(%s)", shard_id)

    def disown_all(self, connection: BaseDatabaseWrapper) -> None:
        liveness.release_all(connection)

    def owner_alive(self, connection: BaseDatabaseWrapper, shard_id: int) -> bool | None:
        return liveness.shard_lock(connection, "SELECT IS_USED_LOCK(%s)", shard_id) is not None

    def backend_id(self, connection: BaseDatabaseWrapper) -> int | None:
        return int(connection.connection.thread_id())

    def blockers(
        self, connection: BaseDatabaseWrapper, backends: list[int]
    ) -> dict[int, list[int]]:
        return liveness.blockers(connection, backends)

    # Faults, by error number.

    def fault(self, exc: BaseException) -> Fault | None:
        return errors.fault(exc)

    def connection_id(self, connection: BaseDatabaseWrapper) -> str:
        return f"mysql:id={connection.connection.thread_id()}"

    def interrupt(self, connection: BaseDatabaseWrapper) -> None:
        liveness.interrupt(connection)

    def interrupter(self, connection: BaseDatabaseWrapper) -> Callable[[], None]:
        return liveness.interrupter(connection)

    # Hashing on the server with SHA2().

    def digests(self, connection: BaseDatabaseWrapper, target: Target, alias: str = "") -> Digests:
        n = Names.of(connection, target)
        # CAST AS CHAR is the stored text: a UUIDField stored as char(32) hashes
        # without hyphens there (so --leaked-hashed needs hashes of that form).
        hexed = f"SHA2(CAST({alias}{n.col} AS CHAR), 256)"
        return Digests(
            # Explicit binary collation: the key column's and the connection's
            # collations differ, and keys compare exactly anyway.
            key_text=f"CONVERT({alias}{n.pk} USING utf8mb4) COLLATE utf8mb4_bin",
            digest=f"LEFT(UNHEX({hexed}), {DIGEST_BYTES})",
            sha256=f"UNHEX({hexed})",
            param="%s",
        )

    def verify_queries(
        self, connection: BaseDatabaseWrapper, target: Target, fingerprints: str, stale_limit: int
    ) -> dict[str, str]:
        n = verify_names(connection, target, fingerprints)
        if self.fingerprint_sets(connection):
            # Whether a row's digest is one of the run's needs no key: the digests view
            # cuts them out of the sets without parsing their keys' JSON, which the
            # counts by key parse once, in one census.
            digests = replace(n, fp=connection.ops.quote_name(PROOF_DIGESTS))
            keyed = self.keyed(connection, target, alias="t.")
            census = proof.census_sql(n.fp, n.key, n.table, n.pk, n.col)
            return {**stale_queries(keyed, digests, stale_limit), "census": census}
        queries = super().verify_queries(connection, target, fingerprints, stale_limit)
        # Deleted and born by one join from the run's fingerprints into the primary key
        # (eq_ref: the key's text converts to the key, the key itself stays indexed):
        # a NOT IN over the keys as text in a binary collation was not materialised and
        # took minutes per 100k rows.
        joined = f"FROM {n.fp} f {{}} JOIN {n.table} t ON t.{n.pk} = f.{n.key} WHERE f.run_id = %s"
        # Distinct keys: a run restarted with --restart fingerprints some rows twice.
        queries["deleted"] = (
            f"SELECT count(DISTINCT f.{n.key}) - count(DISTINCT t.{n.pk}) {joined.format('LEFT')}"
        )
        queries["born"] = (
            f"SELECT (SELECT count(*) FROM {n.table}) - count(DISTINCT t.{n.pk}) "
            f"{joined.format('')}"
        )
        return queries

    # The server's connections.

    def connection_use(self, connection: BaseDatabaseWrapper) -> ConnectionUse | None:
        # Threads_connected is visible to every user (PROCESSLIST shows only one's own
        # threads without the PROCESS privilege). The extra connection MySQL keeps for
        # CONNECTION_ADMIN (and MariaDB's extra_max_connections) lie beyond max_connections.
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@GLOBAL.max_connections")
            (maximum,) = cursor.fetchone()
            cursor.execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
            _, in_use = cursor.fetchone()
        return ConnectionUse(maximum=int(maximum), reserved=0, in_use=int(in_use))

    # --leaked: LOAD DATA from a pipe (leaked.py), never an INSERT with the values.

    def leaked_table(
        self, connection: BaseDatabaseWrapper, target: Target, cursor: Any, name: str, hashed: bool
    ) -> None:
        cursor.execute(f"DROP TEMPORARY TABLE IF EXISTS {name}")
        cursor.execute(leaked.create_sql(connection, target, name, hashed))

    def load_leaked(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        cursor: Any,
        name: str,
        values: Iterator[Any],
        hashed: bool,
    ) -> int:
        return leaked.load(cursor, target, name, values, hashed)

    # The proof: the key by LOAD DATA from a pipe into a session temporary table.

    def prepare_check(self, connection: BaseDatabaseWrapper) -> None:
        # The check materializes the run's digests (its IN subquery) in an internal
        # temporary table; past tmp_table_size (16 MB by default, some 300,000
        # fingerprints) MariaDB moved it to disk: 4.5 s instead of 1.6 s at 1M rows. Only
        # ever raised, like the batches' own (batch.create_sql).
        with connection.cursor() as cursor:
            cursor.execute(
                f"SET SESSION tmp_table_size = GREATEST(@@tmp_table_size, {HEAP_BYTES}), "
                f"max_heap_table_size = GREATEST(@@max_heap_table_size, {HEAP_BYTES})"
            )

    def fingerprints_in_batch(self, connection: BaseDatabaseWrapper) -> bool:
        # MariaDB: a set from the batch's own window table (rotate), whose digests the
        # Sequence engine cuts out (proof.py); MySQL: Fingerprint rows by fingerprint_window.
        return bool(mysql(connection).mysql_is_mariadb)

    def proof_set_views(
        self, connection: BaseDatabaseWrapper, fingerprints: str, sets: str
    ) -> list[tuple[str, str]]:
        return proof.views(fingerprints, sets) if self.fingerprint_sets(connection) else []

    # Seals (proof.py): InnoDB has no xmin to tell which rows a batch left as they are.

    def seals(self, connection: BaseDatabaseWrapper, target: Target) -> bool:
        # An integer key: ranges the service can merge and take the complement of.
        return self.fingerprint_sets(connection) and _integer_key(target)

    def seal(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        seals: str,
        run_id: int,
        keys: tuple[str | None, str],
        rows: int,
    ) -> None:
        n, qn = Names.of(connection, target), connection.ops.quote_name
        lo, hi = keys
        bounds = [self.key_param(target, k) for k in keys if k is not None]
        with connection.cursor() as cursor:
            cursor.execute(proof.seal_sql(n.pk, n.col, n.table, lo is not None), bounds)
            seen, seal = cursor.fetchone()
            if int(seen) != rows:
                return
            cursor.execute(
                f"INSERT INTO {qn(seals)} (run_id, lo, hi, seal) VALUES (%s, %s, %s, %s)",
                [run_id, lo, hi, _text(seal)],
            )

    def seals_now(
        self, connection: BaseDatabaseWrapper, target: Target, ranges: list[tuple[str | None, str]]
    ) -> list[str]:
        n = Names.of(connection, target)
        seals: list[str] = []
        for start in range(0, len(ranges), _SEALS_PER_STATEMENT):
            chunk = ranges[start : start + _SEALS_PER_STATEMENT]
            sql = proof.seals_sql(n.pk, n.col, n.table, [lo is not None for lo, _ in chunk])
            bounds = [self.key_param(target, k) for r in chunk for k in r if k is not None]
            with connection.cursor() as cursor:
                cursor.execute(sql, bounds)
                seals += [_text(seal) for _, seal in sorted(cursor.fetchall())]
        return seals

    def stale_in(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        gaps: list[tuple[Any, Any]],
        limit: int,
        proof_run_id: int,
    ) -> list[str]:
        n = Names.of(connection, target)
        where, params = proof.gaps_where(f"t.{n.pk}", gaps)
        with connection.cursor() as cursor:
            # Most often none (no row written since its batch, none born): nothing to hash.
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {n.table} t WHERE {where})", params)
            if not cursor.fetchone()[0]:
                return []
            keyed = self.keyed(connection, target, alias="t.")
            sql = proof.stale_in_sql(keyed.key_text, keyed.digest, n.table, n.pk, where, limit)
            cursor.execute(sql, [*params, proof_run_id])
            return [_text(key) for (key,) in cursor.fetchall()]

    def load_proof_key(
        self, connection: BaseDatabaseWrapper, target: Target, key: str, batches: bool = False
    ) -> None:
        raw = connection.connection
        held = hashlib.sha256(key.encode()).hexdigest()
        # A session table, outside transactions (MEMORY): loaded once per connection and key.
        if SESSION_KEYS.get(raw) == held:
            return
        with (
            connection.wrap_database_errors,
            contextlib.closing(raw.cursor()) as cur,
        ):
            cur.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {PROOF_TABLE} (k VARBINARY(64)) "
                "ENGINE=MEMORY"
            )
            cur.execute(f"DELETE FROM {PROOF_TABLE}")
            if self.fingerprint_sets(connection):
                cur.execute(proof.SESSION_SQL)
            load_from_pipe(
                cur,
                lambda path: f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {PROOF_TABLE} (k)",
                key.encode() + b"\n",
            )
        SESSION_KEYS.set(raw, held)

    def proof_digest(self, connection: BaseDatabaseWrapper, target: Target, alias: str) -> str:
        col = Names.of(connection, target).col
        if self.fingerprint_sets(connection):
            return proof.keyed_hex(f"{alias}{col}", batch.native_uuid(connection, target))
        # The key as a scalar subquery, evaluated once (no join the optimizer could misjudge).
        hexed = f"SHA2(CONCAT((SELECT k FROM {PROOF_TABLE}), CAST({alias}{col} AS CHAR)), 256)"
        return f"CAST(CONV(LEFT({hexed}, {PROOF_HEX}), 16, 10) AS UNSIGNED)"


#: Ranges one statement recomputes the seals of (``seals_now``).
_SEALS_PER_STATEMENT = 100


def _integer_key(target: Target) -> bool:
    return isinstance(target.pk, models.IntegerField | models.AutoField)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["MySQLBuilder"]
