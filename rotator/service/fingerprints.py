"""The proof: keyed fingerprints of every row's pre-rotation value, and the check against them.

Each batch fingerprints its window in its own transaction: on PostgreSQL in the
batch statement itself, on MariaDB from the batch's own copy of the window, both
from the old values the batch read (``Builder.fingerprints_in_batch``); elsewhere by
one INSERT ... SELECT before its UPDATE (``Builder.fingerprint_window``). There is
no separate pass over the table, and a rolled-back batch leaves no fingerprint
behind. A fingerprint is keyed (see ``models.Fingerprint``): the key is derived
from ``settings.SECRET_KEY`` and the run and never stored, so a copy of the
database cannot be searched for a guessed value. A run restarted
with ``--restart`` keeps the proof of the run it replaces (its fingerprints,
of the values before the first run, under that run's key) and adds its own
windows' values to it: a row the first run rotated has two fingerprints there,
its value before each run.

``stale_keys`` is the independent check: the planned rows whose value is one
of the run's fingerprints, by the table itself, not by the checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import math
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.errors import RotatorError
from rotator.models import Fingerprint, FingerprintSet, Run, Seal, Writer
from rotator.sql import Builder, builder_for
from rotator.sql.base import Fingerprinting, Outcome, Window
from rotator.sql.digests import PROOF_ROWS
from rotator.target import Target

#: Keys one check returns at most (a sweep rotates them, then checks again).
CHECK_LIMIT = 100_000


def readable(builder: Builder, connection: BaseDatabaseWrapper) -> str:
    """What the checks read a run's fingerprints from, one row per fingerprint: where
    batches keep them in sets (PostgreSQL, MariaDB) a view that also unnests those."""
    return PROOF_ROWS if builder.fingerprint_sets(connection) else Fingerprint._meta.db_table


def analyze_proof(builder: Builder, target: Target) -> None:
    """Before a check that joins them: the proof tables' statistics."""
    tables = [Fingerprint._meta.db_table, FingerprintSet._meta.db_table]
    builder.analyze_fingerprints(connections[target.alias], tables)


def recorded(target: Target, proof_run_id: int) -> list[tuple[str, int | None]]:
    """(key, digest) of every fingerprint of a proof, read as the checks read them."""
    connection = connections[target.alias]
    builder = builder_for(connection)
    qn = connection.ops.quote_name
    sql = f"SELECT {qn('key')}, digest FROM {qn(readable(builder, connection))} WHERE run_id = %s"
    with connection.cursor() as cursor:
        cursor.execute(sql, [proof_run_id])
        return [(str(key), _number(digest)) for key, digest in cursor.fetchall()]


def _number(digest: int | bytes | None) -> int | None:
    """A digest as a number (MariaDB's sets keep its hex digits)."""
    return int(digest, 16) if isinstance(digest, bytes | str) else digest


def _exists(target: Target, proof_run_id: int) -> bool:
    return any(
        model.objects.using(target.alias).filter(run_id=proof_run_id).exists()
        for model in (Fingerprint, FingerprintSet)
    )


@dataclass(frozen=True)
class Proof:
    """Where a run's fingerprints are kept (``run_id``) and the key they are made with."""

    run_id: int
    key: str

    #: The run being rotated (``run_id`` is its proof's: itself, or the run --restart replaced).
    writer_run: int = 0

    def write(self, builder: Builder, target: Target, window: Window) -> Fingerprinting | None:
        """Inside the batch transaction: fingerprint ``window``'s rows, or, where the batch
        statement does it itself, return what it needs for that."""
        connection = connections[target.alias]
        builder.load_proof_key(connection, target, self.key, batches=True)
        spec = self.in_statements(builder, connection)
        if spec is None:
            table = Fingerprint._meta.db_table
            builder.fingerprint_window(connection, target, table, self.run_id, window)
        return spec

    def seal(
        self, builder: Builder, target: Target, window: Window, outcome: Outcome, whole: bool
    ) -> None:
        """Inside the batch transaction, after its UPDATE: seal the range it rotated,
        ``(window.lo, outcome.last]``, where the builder seals (``Builder.seals``);
        ``whole``: the batch left no row of it to the application. Otherwise, or when the
        range holds a row its window did not (inserted meanwhile), nothing is sealed and
        the final check hashes the range."""
        connection = connections[target.alias]
        if outcome.last is None or not whole or not builder.seals(connection, target):
            return
        table = Seal._meta.db_table
        keys = (window.lo, outcome.last)
        builder.seal(connection, target, table, self.writer_run, keys, outcome.seen)

    def in_statements(
        self, builder: Builder, connection: BaseDatabaseWrapper
    ) -> Fingerprinting | None:
        """What ``builder``'s batches write themselves (the window's fingerprints, and on
        PostgreSQL their writers), or None where they write neither (``fingerprint_window``
        instead)."""
        if not builder.fingerprints_in_batch(connection):
            return None
        sets, writers = FingerprintSet._meta.db_table, Writer._meta.db_table
        return Fingerprinting(sets, self.run_id, writers, self.writer_run)


def proof_run_id(run: Run) -> int:
    """The run whose fingerprints prove ``run`` (itself, or the run --restart replaced)."""
    return int(run.options.get("proof") or run.pk)


def derive_key(run: Run) -> str:
    """The fingerprint key of ``run``'s proof, in hex: HMAC of SECRET_KEY, never stored."""
    if not settings.SECRET_KEY:
        raise RotatorError(
            "fingerprints are keyed with settings.SECRET_KEY, which is empty; set it, or "
            "pass --no-fingerprints (no proof that the leaked values are gone)"
        )
    label = f"rotator fingerprints of {run.table}.{run.column}, run {proof_run_id(run)}"
    return hmac.new(settings.SECRET_KEY.encode(), label.encode(), hashlib.sha256).hexdigest()


def proof_for(run: Run) -> Proof | None:
    """The run's proof, or None when it was planned with --no-fingerprints (or before 0.5)."""
    if not run.options.get("fingerprints"):
        return None
    return Proof(proof_run_id(run), derive_key(run), run.pk)


def inherited_proof(target: Target) -> int | None:
    """For --restart: the proof of the target's last fingerprinted run, while it is kept."""
    from rotator.store.lifecycle import runs_for

    for run in runs_for(target).order_by("-pk")[:20]:
        if run.options.get("fingerprints"):
            proof = proof_run_id(run)
            if _exists(target, proof):
                return proof
            return None
    return None


def has_fingerprints(target: Target, run: Run) -> bool:
    return _exists(target, proof_run_id(run))


def stale_keys(
    target: Target, run: Run, limit: int = CHECK_LIMIT, analyze: bool = False
) -> list[str]:
    """Keys (as the database's text) of the rows holding one of the run's fingerprinted
    values: written back by the application after their batch, or never rotated.

    Where the builder knows which transactions wrote the run's rows
    (``Builder.finish_check``, PostgreSQL), only the rows written by others are hashed;
    where its batches seal their ranges (``Builder.seals``, MariaDB), only the rows
    outside the ranges whose seal still holds (``unsealed``)."""
    proof = proof_for(run)
    if proof is None:
        raise AssertionError("unreachable: only a fingerprinted run is checked")
    connection = connections[target.alias]
    builder = builder_for(connection)
    rows = readable(builder, connection)
    sql = builder.finish_check(connection, target, rows, Writer._meta.db_table, limit=limit)
    params: list[int] = [run.pk, proof.run_id]
    if sql is None:
        queries = builder.verify_queries(connection, target, rows, stale_limit=limit)
        sql, params = queries["stale_keys"], [proof.run_id]
    if analyze:
        analyze_proof(builder, target)
    with transaction.atomic(using=target.alias):
        builder.load_proof_key(connection, target, proof.key)
        builder.prepare_check(connection)
        if builder.seals(connection, target):
            gaps = unsealed(builder, target, run)
            return builder.stale_in(connection, target, gaps, limit, proof.run_id)
        # The driver's own cursor: the statements use its placeholder (Digests.param).
        with (
            connection.wrap_database_errors,
            contextlib.closing(connection.connection.cursor()) as cursor,
        ):
            cursor.execute(sql, params)
            return [str(k) for (k,) in cursor.fetchall()]


#: Gaps past which the check hashes every row (one condition per gap).
MAX_GAPS = 1_000


def unsealed(builder: Builder, target: Target, run: Run) -> list[tuple[Any, Any]]:
    """In the check's transaction: the key ranges ``(lo, hi]`` (typed keys, None unbounded)
    outside every range whose seal (``models.Seal``) still holds: rows written since
    their batch, deleted, born, or left unsealed. Integer keys (``Builder.seals``)."""
    connection = connections[target.alias]
    sealed = list(
        Seal.objects.using(target.alias).filter(run_id=run.pk).values_list("lo", "hi", "seal")
    )
    now = builder.seals_now(connection, target, [(lo, hi) for lo, hi, _ in sealed])
    intact = [
        (None if lo is None else int(lo), int(hi))
        for (lo, hi, seal), seal_now in zip(sealed, now, strict=True)
        if seal == seal_now
    ]
    gaps = gaps_between(intact)
    return gaps if len(gaps) <= MAX_GAPS else [(None, None)]


def gaps_between(ranges: list[tuple[int | None, int]]) -> list[tuple[int | None, int | None]]:
    """The key ranges ``(lo, hi]`` (None unbounded) that none of ``ranges`` covers."""
    if not ranges:
        return [(None, None)]
    ranges = sorted(ranges, key=lambda r: -math.inf if r[0] is None else r[0])
    first_lo, covered = ranges[0]
    gaps: list[tuple[int | None, int | None]] = [] if first_lo is None else [(None, first_lo)]
    for lo, hi in ranges[1:]:
        if lo is not None and lo > covered:
            gaps.append((covered, lo))
        covered = max(covered, hi)
    gaps.append((covered, None))
    return gaps
