"""Per-database SQL for hashing values on the server: fingerprints, --verify, --leaked.

A value is hashed as its text (``str(field.to_python(value))``: a UUID in its
hyphenated lower-case form), UTF-8 encoded, with sha256; a fingerprint keeps
the first 8 bytes. PostgreSQL and MySQL hash with their own functions;
SQLite calls Python functions registered on the connection. No value ever
leaves the server, and none appears in SQL text or a bind parameter.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.errors import RotatorError
from rotator.service.target import Target

DIGEST_BYTES = 8


def value_text(field: Any, value: Any) -> str:
    """The text a value is hashed as, the same on every database."""
    return str(field.to_python(value))


def sha256_of(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


@dataclass(frozen=True)
class Digests:
    """SQL expressions over one table's columns (identifiers already quoted)."""

    vendor: str
    #: The primary key as text (compared with Fingerprint.key).
    key_text: str
    #: First 8 bytes of sha256 of the column's text; NULL for NULL.
    digest: str
    #: Full sha256 (32 bytes) of the column's text, for --leaked-hashed.
    sha256: str
    #: Placeholder of the driver's cursor.
    param: str


def digests_for(connection: BaseDatabaseWrapper, target: Target, alias: str = "") -> Digests:
    """Expressions for ``target`` on ``connection``; ``alias`` prefixes the columns ("t.")."""
    qn = connection.ops.quote_name
    pk = f"{alias}{qn(target.pk.column)}"
    col = f"{alias}{qn(target.field.column)}"
    vendor = connection.vendor
    if vendor == "postgresql":
        text = f"convert_to({col}::text, 'UTF8')"
        return Digests(
            vendor,
            key_text=f"{pk}::text",
            digest=f"substring(sha256({text}) FROM 1 FOR {DIGEST_BYTES})",
            sha256=f"sha256({text})",
            param="%s",
        )
    if vendor == "sqlite":
        register_sqlite(connection, target)
        return Digests(
            vendor,
            key_text=f"CAST({pk} AS TEXT)",
            digest=f"rotator_digest({col})",
            sha256=f"rotator_sha256({col})",
            param="?",
        )
    if vendor == "mysql":
        # CAST AS CHAR is the stored text: a UUIDField stored as char(32) hashes
        # without hyphens there (so --leaked-hashed needs hashes of that form).
        hexed = f"SHA2(CAST({col} AS CHAR), 256)"
        return Digests(
            vendor,
            # Explicit binary collation: the key column's and the connection's
            # collations differ, and keys compare exactly anyway.
            key_text=f"CONVERT({pk} USING utf8mb4) COLLATE utf8mb4_bin",
            digest=f"LEFT(UNHEX({hexed}), {DIGEST_BYTES})",
            sha256=f"UNHEX({hexed})",
            param="%s",
        )
    raise RotatorError(
        f"fingerprints and --verify/--leaked need PostgreSQL, SQLite or MySQL, not "
        f"{connection.vendor!r}; database {target.alias!r} cannot hash values on the server"
    )


def supported(connection: BaseDatabaseWrapper) -> bool:
    return connection.vendor in ("postgresql", "sqlite", "mysql")


def register_sqlite(connection: BaseDatabaseWrapper, target: Target) -> None:
    """Register rotator_digest() and rotator_sha256() for ``target``'s field."""
    connection.ensure_connection()
    field = target.field

    def full(value: Any) -> bytes | None:
        return None if value is None else sha256_of(value_text(field, value))

    def digest(value: Any) -> bytes | None:
        hashed = full(value)
        return None if hashed is None else hashed[:DIGEST_BYTES]

    raw = connection.connection
    raw.create_function("rotator_digest", 1, digest, deterministic=True)
    raw.create_function("rotator_sha256", 1, full, deterministic=True)
