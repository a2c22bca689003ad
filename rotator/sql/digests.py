"""SQL for hashing values on the server: fingerprints, --verify, --leaked.

A value is hashed as its text (``str(field.to_python(value))``: a UUID in its
hyphenated lower-case form), UTF-8 encoded, with sha256. A fingerprint is keyed:
the first 60 bits (a positive bigint, indexable everywhere) of sha256 of the
run's key in hex followed by the value's text. The key reaches the server in a
one-row temporary table (``PROOF_TABLE``, read by a scalar subquery, which
the planner evaluates once) loaded the way new
values are (binary COPY, LOAD DATA from a pipe) or, on SQLite, inside a Python
function: never in SQL text or a bind parameter. Each builder says how its
database hashes (``Builder.digests``, ``Builder.proof_digest``); the statements
built from those expressions here are the same on every database that hashes,
unless a builder overrides them. No value ever leaves the server.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

DIGEST_BYTES = 8
#: Hex digits of sha256 a keyed fingerprint keeps (60 bits: a positive bigint).
PROOF_HEX = 15
#: The one-row temporary table holding the run's fingerprint key, in hex (column ``k``).
PROOF_TABLE = "rotator_proof_key"
#: The view (PostgreSQL) the checks read a run's fingerprints from, one row per
#: fingerprint: the Fingerprint rows and the FingerprintSet arrays unnested.
PROOF_ROWS = "rotator_fingerprint_rows"
#: The view (MariaDB) the checks read a run's digests from, without their keys.
PROOF_DIGESTS = "rotator_fingerprint_digests"


def value_text(field: Any, value: Any) -> str:
    """The text a value is hashed as, the same on every database."""
    return str(field.to_python(value))


def sha256_of(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def keyed_digest(key: str, text: str) -> int:
    """The keyed fingerprint of a value's text under ``key`` (hex), as the servers compute it."""
    return int(hashlib.sha256((key + text).encode()).hexdigest()[:PROOF_HEX], 16)


@dataclass(frozen=True)
class Digests:
    """SQL expressions over one table's columns (identifiers already quoted)."""

    #: The primary key as text (compared with Fingerprint.key).
    key_text: str
    #: First 8 bytes of sha256 of the column's text; NULL for NULL.
    digest: str
    #: Full sha256 (32 bytes) of the column's text, for --leaked-hashed.
    sha256: str
    #: Placeholder of the driver's cursor.
    param: str
    #: What a statement using the keyed digest joins (the key table), with a leading space.
    join: str = ""


@dataclass(frozen=True)
class VerifyNames:
    """The quoted names --verify's statements use."""

    table: str
    pk: str
    col: str
    #: The Fingerprint table and its ``key`` column (a reserved word in MySQL).
    fp: str
    key: str


def verify_queries(d: Digests, n: VerifyNames, stale_limit: int) -> dict[str, str]:
    """One count per statement. An IN subquery is materialised with an index of its own
    (SQLite, MySQL), so ``deleted`` and ``born`` are each one pass."""
    p = d.param
    fp, key, table, col = n.fp, n.key, n.table, n.col
    # Distinct keys: a run restarted with --restart fingerprints some rows twice.
    deleted = (
        f"SELECT count(DISTINCT f.{key}) FROM {fp} f WHERE f.run_id = {p} "
        f"AND f.{key} NOT IN (SELECT {d.key_text} FROM {table} t)"
    )
    born = (
        f"SELECT count(*) FROM {table} t "
        f"WHERE {d.key_text} NOT IN (SELECT {key} FROM {fp} WHERE run_id = {p})"
    )
    return {
        **stale_queries(d, n, stale_limit),
        "fingerprints": f"SELECT count(DISTINCT {key}) FROM {fp} WHERE run_id = {p}",
        "rows": f"SELECT count(*) FROM {table}",
        "deleted": deleted,
        "born": born,
        "nulls": f"SELECT count(*) FROM {table} WHERE {col} IS NULL",
    }


def stale_queries(d: Digests, n: VerifyNames, stale_limit: int) -> dict[str, str]:
    """The statements every database runs the same way: any, stale, duplicates, stale_keys."""
    p = d.param
    fp, table, col = n.fp, n.table, n.col
    mine = f"run_id = {p} AND digest IS NOT NULL"
    stale = f"FROM {table} t{d.join} WHERE {d.digest} IN (SELECT digest FROM {fp} WHERE {mine})"
    return {
        "any": f"SELECT EXISTS (SELECT 1 FROM {fp} WHERE run_id = {p})",
        "stale": f"SELECT count(*) {stale}",
        "duplicates": (
            f"SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM {table} "
            f"WHERE {col} IS NOT NULL GROUP BY {col} HAVING count(*) > 1) d"
        ),
        "stale_keys": f"SELECT {d.key_text} {stale} ORDER BY t.{n.pk} LIMIT {stale_limit}",
    }
