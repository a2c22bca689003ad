"""What every per-database builder provides: the batch, the plan, liveness, faults.

Keys travel as the database's own values, kept as text (``Window.lo``/``hi``,
``Outcome.last``): a cursor is what the database returned, so it compares
exactly, whatever the key type, the time zone or the field's conversion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.errors import RotatorError
from rotator.faults import Fault
from rotator.generators import Generator, Tokens
from rotator.sql.digests import Digests, VerifyNames, verify_queries
from rotator.sql.names import Names
from rotator.target import Target
from rotator.values import db_values


@dataclass(frozen=True)
class Window:
    """The next rows of a shard: keys in (lo, hi], in key order, at most ``limit``."""

    lo: str | None  # exclusive; None: from the shard's (and table's) first key
    hi: str  # inclusive
    limit: int


@dataclass
class Outcome:
    """What one batch statement did to its window."""

    seen: int = 0  # rows in the window, at the statement's snapshot
    last: str | None = None  # the window's largest key; None when it was empty
    rotated: int = 0  # rows given a new value
    nulls: int = 0  # NULL rows left NULL
    collided: list[Any] = field(default_factory=list)  # keys whose new value was taken
    missed: list[Any] = field(default_factory=list)  # deleted or changed by someone else
    #: The first key of the window held by another transaction (or deleted meanwhile):
    #: the window stopped before it, so the shard is not done; the next batch starts there.
    held: str | None = None


@dataclass(frozen=True)
class Fingerprinting:
    """Where a batch statement writes its window's fingerprints (``fingerprints_in_batch``):
    the Fingerprint table and the run whose proof they are; and where it records the
    transaction that wrote its rows (``models.Writer``), for the run itself."""

    table: str
    run_id: int
    writers: str
    writer_run: int


@dataclass(frozen=True)
class Split:
    """A plan's facts: the high-water key, the rows below it, the shards' upper keys."""

    high_water: str | None
    total: int
    uppers: list[str]  # ascending, the last one is high_water
    sizes: list[int]  # rows of each shard
    estimated: bool = False  # total (and the shards' sizes) are estimates


def positions(total: int, shards: int) -> list[int]:
    """1-based positions of the shards' last keys: equal shares, within one row."""
    count = max(1, min(shards, total))
    return [total * (i + 1) // count for i in range(count)]


#: Values (and bytes) per batch where --leaked has no COPY.
LEAKED_BATCH = 5_000
LEAKED_BATCH_BYTES = 4 << 20


def leaked_batches(values: Iterator[Any]) -> Iterator[list[Any]]:
    """``values`` in lists of at most LEAKED_BATCH values or about LEAKED_BATCH_BYTES."""
    batch: list[Any] = []
    size = 0
    for value in values:
        batch.append(value)
        size += len(value) if isinstance(value, str | bytes) else 16
        if len(batch) >= LEAKED_BATCH or size >= LEAKED_BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


@dataclass(frozen=True)
class ConnectionUse:
    """A server's client connections: how many it takes and how many are open."""

    #: max_connections (the server's setting).
    maximum: int
    #: Of those, kept for superusers or roles with a reserved slot.
    reserved: int
    #: Client connections open now, the caller's own included.
    in_use: int

    @property
    def limit(self) -> int:
        """Client connections an ordinary user may have open in all."""
        return max(0, self.maximum - self.reserved)

    @property
    def free(self) -> int:
        return max(0, self.limit - self.in_use)


def verify_names(connection: BaseDatabaseWrapper, target: Target, fingerprints: str) -> VerifyNames:
    n, qn = Names.of(connection, target), connection.ops.quote_name
    return VerifyNames(n.table, n.pk, n.col, fp=qn(fingerprints), key=qn("key"))


def sizes_of(ends: list[int]) -> list[int]:
    return [end - start for start, end in zip([0, *ends], ends, strict=False)]


class Builder:
    vendor = "generic"
    #: False where the database has one writer: workers then take turns.
    concurrent_writers = True
    #: False where a varchar(N) column stores a longer value instead of refusing it.
    enforces_length = True
    #: Whether fingerprints, --verify and --leaked can hash values on this server.
    hashes_on_server = False
    #: The driver cursor's placeholder.
    param = "%s"
    #: How CREATE spells a session temporary table, and a bytes column's type.
    temporary = "TEMPORARY TABLE"
    blob_type = "BLOB"

    def supports(self, target: Target, generator: Generator) -> str | None:
        """Why this builder cannot rotate ``target`` with ``generator``, or None."""
        if generator.server_side:
            return f"--generator database is not available on {self.vendor}"
        return None

    # The session and the batch.

    def prepare_session(self, connection: BaseDatabaseWrapper, target: Target, name: str) -> None:
        """Once per worker connection (and after a reconnect), outside any transaction."""

    def adapt(self, connection: BaseDatabaseWrapper) -> None:
        """Fit a new connection of the run for what is between it and the server (a pooler)."""

    def guard_transaction(
        self, connection: BaseDatabaseWrapper, lock_timeout: float, idle_timeout: float
    ) -> None:
        """First statement of a batch transaction: bound lock waits and idle time."""

    def tokens_needed(self, target: Target, window: Window) -> int:
        """How many new values a window can use (never more than its rows can be)."""
        integer = isinstance(target.pk, models.IntegerField | models.AutoField)
        if integer and window.lo is not None:
            return max(1, min(window.limit, int(window.hi) - int(window.lo)))
        return window.limit

    def rotate(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        window: Window,
        tokens: Tokens | None,
        fill_nulls: bool,
        fingerprints: Fingerprinting | None = None,
    ) -> Outcome:
        """Rotate ``window``; ``fingerprints`` only where ``fingerprints_in_batch``."""
        raise NotImplementedError

    def rotate_keys(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        keys: list[Any],
        tokens: Tokens | None,
        fill_nulls: bool,
        fingerprints: Fingerprinting | None = None,
    ) -> Outcome:
        """Give ``keys`` (collided rows of this batch) other new values; ``fingerprints``:
        only the writers are recorded (the keys were fingerprinted by their batch)."""
        raise NotImplementedError

    def lock_free(
        self, connection: BaseDatabaseWrapper, target: Target, keys: list[str]
    ) -> list[str]:
        """In a sweep's transaction: lock the rows of ``keys`` (the database's text of each)
        that no other transaction holds, without waiting for the others; return those
        locked. Here: every key (SQLite's writer locks the whole database; a database
        without ``SKIP LOCKED`` waits in the sweep's UPDATE, as before)."""
        return list(keys)

    def count_present(
        self, connection: BaseDatabaseWrapper, target: Target, keys: list[Any]
    ) -> int:
        """How many of ``keys`` still exist (the rest were deleted)."""
        return target.queryset().filter(pk__in=keys).count()

    def describe(self, connection: BaseDatabaseWrapper, target: Target, gen: Generator) -> str:
        """The SQL of one batch, with placeholders, for --dry-run."""
        raise NotImplementedError

    # The plan.

    def plan_lock(self, connection: BaseDatabaseWrapper, target: Target) -> None:
        """Inside the planning transaction: make a second planner wait for the first."""

    def split(self, connection: BaseDatabaseWrapper, target: Target, shards: int) -> Split:
        """Cut the key space into at most ``shards`` ranges of about equal rows."""
        qs = target.queryset().order_by("pk").values_list("pk", flat=True)
        high = qs.reverse().first()
        if high is None:
            return Split(None, 0, [], [])
        keys = qs.filter(pk__lte=high)
        ends = positions(keys.count(), shards)
        uppers = [str(keys[end - 1 : end].get()) for end in ends[:-1]] + [str(high)]
        return Split(str(high), ends[-1], uppers, sizes_of(ends))

    def row_estimate(self, connection: BaseDatabaseWrapper, target: Target) -> int:
        """The table's rows, by the statistics where they are cheap (the value-space check)."""
        return target.queryset().count()

    def key_param(self, target: Target, text: str) -> Any:
        """A key kept as text, as a parameter this builder's SQL compares exactly."""
        return text

    # Liveness of shard owners (see claims.py): a lease on the database clock on every
    # database; where ``has_locks``, also a session lock per shard on direct connections,
    # which frees the moment the owner's session dies. Never a lock behind a pooler.

    #: Whether this database has session locks (try_own, owner_alive) at all.
    has_locks = False

    def pooled(self, connection: BaseDatabaseWrapper) -> bool:
        """Whether ``connection`` goes through a pooler that shares server sessions."""
        return False

    def try_own(self, connection: BaseDatabaseWrapper, shard_id: int) -> bool:
        """Take the lock that says "shard_id is worked by this session"; False if held."""
        return True

    def disown(self, connection: BaseDatabaseWrapper, shard_id: int) -> None:
        """Give the lock back (the shard is done or handed back)."""

    def disown_all(self, connection: BaseDatabaseWrapper) -> None:
        """Give back every lock of this session (before a pooled connection is reused)."""

    def owner_alive(self, connection: BaseDatabaseWrapper, shard_id: int) -> bool | None:
        """Whether some session holds shard_id's lock; None where there are no such locks."""
        return None

    def backend_id(self, connection: BaseDatabaseWrapper) -> int | None:
        """The database's id of this session (shown to operators), if it has one."""
        return None

    def blockers(
        self, connection: BaseDatabaseWrapper, backends: list[int]
    ) -> dict[int, list[int]]:
        """For each of ``backends`` waiting on a lock, the sessions that hold it."""
        return {}

    # Faults and interruption.

    def fault(self, exc: BaseException) -> Fault | None:
        """What kind of passing fault ``exc`` is, or None when it is not one to retry."""
        return None

    def connection_id(self, connection: BaseDatabaseWrapper) -> str:
        return f"{connection.vendor}:{id(connection.connection):x}"

    def interrupt(self, connection: BaseDatabaseWrapper) -> None:
        """Cancel the statement running on ``connection`` (called from another thread)."""

    def interrupter(self, connection: BaseDatabaseWrapper) -> Callable[[], None]:
        """What cancels the statement running on ``connection`` from another thread, made
        before the statement starts (a driver may refuse to be asked while it runs)."""
        return lambda: self.interrupt(connection)

    # Hashing on the server: fingerprints, --verify, --leaked (SQL in digests.py).

    def digests(self, connection: BaseDatabaseWrapper, target: Target, alias: str = "") -> Digests:
        """Hash expressions for ``target``; ``alias`` prefixes the columns ("t.")."""
        raise RotatorError(
            f"fingerprints and --verify/--leaked need PostgreSQL, SQLite or MySQL, not "
            f"{connection.vendor!r}; database {target.alias!r} cannot hash values on the server"
        )

    def verify_queries(
        self, connection: BaseDatabaseWrapper, target: Target, fingerprints: str, stale_limit: int
    ) -> dict[str, str]:
        """--verify's statements by count name; ``fingerprints``: Fingerprint's table.

        The stale counts read the run's key (``load_proof_key``, same transaction)."""
        return verify_queries(
            self.keyed(connection, target, alias="t."),
            verify_names(connection, target, fingerprints),
            stale_limit,
        )

    # The proof: keyed fingerprints written by each batch (see models.Fingerprint).

    def fingerprints_in_batch(self, connection: BaseDatabaseWrapper) -> bool:
        """Whether ``rotate`` fingerprints the window itself (``fingerprints=``), from the
        old values its window read, as one FingerprintSet row; elsewhere
        ``fingerprint_window`` runs before it and writes one Fingerprint row per row."""
        return False

    def fingerprint_sets(self, connection: BaseDatabaseWrapper) -> bool:
        """Whether a batch keeps its window's fingerprints in one FingerprintSet row, read
        back through ``PROOF_ROWS``, rather than one Fingerprint row each."""
        return self.fingerprints_in_batch(connection)

    def proof_set_views(
        self, connection: BaseDatabaseWrapper, fingerprints: str, sets: str
    ) -> list[tuple[str, str]]:
        """DDL (forward, backward) of migration 0011: the sets of a database whose
        ``fingerprint_window`` writes them (PostgreSQL's came with 0010)."""
        return []

    def proof_array_type(self, connection: BaseDatabaseWrapper, element: str) -> str:
        """The column type of a FingerprintSet's array of ``element``: unused text here."""
        return str(models.TextField().db_type(connection))

    def proof_views(self, fingerprints: str, sets: str) -> list[tuple[str, str]]:
        """DDL (forward, backward) the proof needs beyond its tables (migration 0010)."""
        return []

    def load_proof_key(
        self, connection: BaseDatabaseWrapper, target: Target, key: str, batches: bool = False
    ) -> None:
        """Make the run's fingerprint key (hex) readable by this transaction's statements
        (``proof_digest`` reads it), never through SQL text or a bind parameter;
        ``batches``: for a worker's batches (it may stay loaded for the session)."""
        self.digests(connection, target)  # refuses a database that cannot hash

    def end_session(self, connection: BaseDatabaseWrapper) -> None:
        """A worker is done with ``connection``: drop what its session keeps of the run."""

    def proof_digest(self, connection: BaseDatabaseWrapper, target: Target, alias: str) -> str:
        """SQL of the column's keyed fingerprint (a bigint; NULL for NULL)."""
        raise AssertionError("unreachable: digests() refuses this database")

    def proof_join(self) -> str:
        """What a statement using ``proof_digest`` joins, with a leading space."""
        return ""

    def keyed(self, connection: BaseDatabaseWrapper, target: Target, alias: str) -> Digests:
        """``digests()`` with the keyed fingerprint as its digest."""
        return replace(
            self.digests(connection, target, alias=alias),
            digest=self.proof_digest(connection, target, alias),
            join=self.proof_join(),
        )

    def finish_check(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        fingerprints: str,
        writers: str,
        limit: int,
    ) -> str | None:
        """The check that finishes a run, hashing only rows its writers did not leave as
        they are (params: the run, its proof's run); None: ``stale_keys`` of
        ``verify_queries``, which hashes every row."""
        return None

    def analyze_fingerprints(self, connection: BaseDatabaseWrapper, tables: list[str]) -> None:
        """Give the planner the proof tables' statistics before a check joins them."""

    def prepare_check(self, connection: BaseDatabaseWrapper) -> None:
        """In a check's transaction, before its statements: what the server needs to
        compare the table with a run's fingerprints in memory (nothing here)."""

    def checked_relation(self, relation: str) -> str:
        """What --verify's statements read fingerprints from: ``relation`` itself, or the
        copy ``copy_checked`` makes."""
        return relation

    def copy_checked(self, connection: BaseDatabaseWrapper, relation: str, run_id: int) -> None:
        """First in --verify's transaction: copy one run's fingerprints out of ``relation``
        where its statements need statistics that ``relation`` cannot have."""

    def window_bound(
        self, connection: BaseDatabaseWrapper, target: Target, text: str
    ) -> tuple[str, Any]:
        """SQL and parameter comparing the key with a window's bound, as the batch does."""
        return "%s", self.key_param(target, text)

    def window_where(
        self, connection: BaseDatabaseWrapper, target: Target, window: Window
    ) -> tuple[str, list[Any]]:
        """The condition (and its parameters) selecting ``window``'s key range, as the
        batch does (before its LIMIT)."""
        pk = Names.of(connection, target).pk
        hi_sql, hi = self.window_bound(connection, target, window.hi)
        if window.lo is None:
            return f"{pk} <= {hi_sql}", [hi]
        lo_sql, lo = self.window_bound(connection, target, window.lo)
        return f"{pk} > {lo_sql} AND {pk} <= {hi_sql}", [lo, hi]

    def fingerprint_window(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        fingerprints: str,
        run_id: int,
        window: Window,
    ) -> None:
        """In a batch's transaction, before its UPDATE: fingerprint the window's rows
        (one INSERT ... SELECT on the server)."""
        qn = connection.ops.quote_name
        n = Names.of(connection, target)
        d = self.keyed(connection, target, alias="w.")
        where, params = self.window_where(connection, target, window)
        sql = (
            f"INSERT INTO {qn(fingerprints)} ({qn('run_id')}, {qn('key')}, {qn('digest')}) "
            f"SELECT %s, {d.key_text}, {d.digest} FROM (SELECT {n.pk}, {n.col} FROM {n.table} "
            f"WHERE {where} ORDER BY {n.pk} LIMIT %s) w{d.join}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [run_id, *params, window.limit])

    # Seals (models.Seal): what a batch left as it wrote it, where no row version says.

    def seals(self, connection: BaseDatabaseWrapper, target: Target) -> bool:
        """Whether each batch seals the range it rotated (``seal``), so that the check
        finishing a run hashes only the rows outside the ranges still sealed
        (``stale_in``): where nothing else tells which rows the run's batches left as
        they are (PostgreSQL's ``finish_check`` reads ``xmin``)."""
        return False

    def seal(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        seals: str,
        run_id: int,
        keys: tuple[str | None, str],
        rows: int,
    ) -> None:
        """In a batch's transaction, after its UPDATE: seal the keys ``(lo, hi]`` (as text;
        ``lo`` None: no lower bound) with the run's key (``load_proof_key``), as a row of
        ``seals`` (models.Seal's table) for ``run_id``; nothing when the range holds other
        than the ``rows`` rows its batch saw (one inserted meanwhile)."""
        raise AssertionError("unreachable: seals() is False here")

    def seals_now(
        self, connection: BaseDatabaseWrapper, target: Target, ranges: list[tuple[str | None, str]]
    ) -> list[str]:
        """In the check's transaction: the seal each of ``ranges`` has now, in order."""
        raise AssertionError("unreachable: seals() is False here")

    def stale_in(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        gaps: list[tuple[Any, Any]],
        limit: int,
        proof_run_id: int,
    ) -> list[str]:
        """In the check's transaction: keys of the rows in ``gaps`` (typed keys ``(lo, hi]``,
        None unbounded) that hold one of the proof's fingerprinted values."""
        raise AssertionError("unreachable: seals() is False here")

    def high_water_bound(
        self, connection: BaseDatabaseWrapper, target: Target, text: str
    ) -> tuple[str, Any]:
        """SQL and parameter comparing the key with a high-water key kept as text."""
        return "%s", target.pk.get_db_prep_value(target.key_from_text(text), connection)

    def leaked_table(
        self, connection: BaseDatabaseWrapper, target: Target, cursor: Any, name: str, hashed: bool
    ) -> None:
        """(Re)create the temporary table ``name`` (v) that --leaked loads the dump into."""
        column_type = self.blob_type if hashed else target.field.db_type(connection)
        cursor.execute(f"DROP TABLE IF EXISTS {name}")
        cursor.execute(f"CREATE {self.temporary} {name} (v {column_type})")

    def load_leaked(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        cursor: Any,
        name: str,
        values: Iterator[Any],
        hashed: bool,
    ) -> int:
        """Load ``values`` (streamed) into table ``name``; return how many.

        Bind parameters: only for a database without a server log (SQLite); the
        others override this so that no value is ever in SQL text.
        """
        insert = f"INSERT INTO {name} (v) VALUES ({self.param})"
        lines = 0
        for batch in leaked_batches(values):
            cursor.executemany(insert, [(v,) for v in batch])
            lines += len(batch)
        return lines

    def leaked_count(
        self, connection: BaseDatabaseWrapper, target: Target, name: str, hashed: bool
    ) -> str:
        """How many of the table's rows hold a value (or a sha256) of table ``name``."""
        n = Names.of(connection, target)
        # Asked even when not hashed: a database that cannot hash is refused either way.
        d = self.digests(connection, target, alias="t.")
        probe = d.sha256 if hashed else f"t.{n.col}"
        return f"SELECT count(*) FROM {n.table} t WHERE {probe} IN (SELECT v FROM {name})"

    # The server, as operators see it.

    def connection_use(self, connection: BaseDatabaseWrapper) -> ConnectionUse | None:
        """The server's connection limit and current use, or None where there is none."""
        return None

    def check_replication_lag(
        self, connection: BaseDatabaseWrapper, alias: str, limit: float
    ) -> None:
        """Refuse ``--max-replication-lag`` where it cannot be measured."""
        raise RotatorError(
            f"--max-replication-lag {limit:g} reads PostgreSQL's pg_stat_replication, but "
            f"database {alias!r} is {connection.display_name}; drop the flag, or pass "
            "--pause-when with a check of your own"
        )

    def replication_lag(self, connection: BaseDatabaseWrapper) -> float | None:
        """The largest replay lag of the primary's standbys in seconds, or None."""
        raise AssertionError("unreachable: check_replication_lag() refuses this database")

    def describe_location(self, connection: BaseDatabaseWrapper) -> str:
        """Where the database is, for a "cannot connect" message (never the password)."""
        settings = connection.settings_dict
        host = settings.get("HOST") or "local socket"
        port = f":{settings['PORT']}" if settings.get("PORT") else ""
        return f"{settings.get('NAME')} on {host}{port}"

    @staticmethod
    def prep_values(connection: BaseDatabaseWrapper, target: Target, tokens: Tokens) -> list[Any]:
        return db_values(target, connection, tokens.python_values(), tokens.source)
