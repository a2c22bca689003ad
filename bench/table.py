"""The ticket table between contenders: reset, snapshot before, verify after.

Before each contender the old tokens are copied to an unlogged side table
(no WAL of its own); afterwards a join counts the rows whose token changed,
so no contender can look fast by skipping rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import DatabaseError, connections

from tickets.models import Ticket

from . import vendors

SIDE = "bench_old_tokens"


@dataclass(frozen=True)
class Verdict:
    ok: bool
    text: str


def _execute(sql: str, params: list | None = None) -> tuple | None:
    with connections["default"].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() if cursor.description else None


def _names() -> tuple[str, str, str]:
    qn = connections["default"].ops.quote_name
    meta = Ticket._meta
    return qn(meta.db_table), qn(meta.pk.column), qn(meta.get_field("token").column)


def prepare_schema() -> None:
    """Keep autovacuum off the bench table: it would otherwise start mid-contender."""
    table, _, _ = _names()
    if vendors.vendor() != "postgresql":
        return
    _execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")


def reset() -> None:
    """Empty the ticket table (new files, identity from 1) and rotator's run tables."""
    table, _, _ = _names()
    if vendors.vendor() != "postgresql":
        return vendors.reset(table, SIDE)
    _execute(f"DROP TABLE IF EXISTS {SIDE}")
    proof = "rotator_fingerprint, rotator_fingerprintset"
    _execute(f"TRUNCATE {table}, {proof}, rotator_shard, rotator_run RESTART IDENTITY")


def snapshot() -> bool:
    """Save the tokens, VACUUM ANALYZE, CHECKPOINT; return whether CHECKPOINT was allowed."""
    table, pk, token = _names()
    if vendors.vendor() != "postgresql":
        vendors.snapshot(table, pk, token, SIDE)
        return True
    _execute(f"CREATE UNLOGGED TABLE {SIDE} AS SELECT {pk} AS id, {token} AS token FROM {table}")
    _execute(f"VACUUM ANALYZE {table}")
    _execute(f"ANALYZE {SIDE}")
    try:
        _execute("CHECKPOINT")
    except DatabaseError as exc:  # only superusers or members of pg_checkpoint may
        if "permission" not in str(exc).lower():
            raise
        return False
    return True


def upper_key(rows: int) -> int:
    """The largest id among the first ``rows`` rows: a sample's upper bound."""
    table, pk, _ = _names()
    found = _execute(f"SELECT {pk} FROM {table} ORDER BY {pk} LIMIT 1 OFFSET %s", [rows - 1])
    if found is None:
        raise AssertionError(f"unreachable: the table has fewer than {rows:,} rows")
    return found[0]


def verify(expected: int, total: int, upper: int | None) -> Verdict:
    """Exactly ``expected`` tokens changed (all with id <= ``upper``), none lost or added."""
    table, pk, token = _names()
    found = _execute(
        # Portable SQL (tokens are never NULL; a missing row counts as changed).
        f"SELECT count(*), count(t.{pk}), "
        f"sum(CASE WHEN t.{pk} IS NULL OR t.{token} <> o.token THEN 1 ELSE 0 END), "
        f"sum(CASE WHEN (t.{pk} IS NULL OR t.{token} <> o.token) AND o.id > %s THEN 1 ELSE 0 END) "
        f"FROM {SIDE} o LEFT JOIN {table} t ON t.{pk} = o.id",
        [2**62 if upper is None else upper],
    )
    (count,) = _execute(f"SELECT count(*) FROM {table}") or (0,)
    saved, kept, changed, outside = (int(v or 0) for v in found or (0, 0, 0, 0))
    ok = saved == total and kept == total and count == total and changed == expected
    ok = ok and outside == 0
    text = f"{changed:,}/{expected:,} changed"
    if not ok:
        text += f" (FAILED: {saved:,} saved, {kept:,} kept, {count:,} now, {outside:,} outside)"
    return Verdict(ok, text)
