"""The ticket table between contenders: reset, snapshot before, verify after.

Before each contender the old tokens are copied to an unlogged side table
(no WAL of its own); afterwards a join counts the rows whose token changed,
so no contender can look fast by skipping rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import DatabaseError, connections

from tickets.models import Ticket

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
    _execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")


def reset() -> None:
    """Empty the ticket table (new files, identity from 1) and rotator's run tables."""
    table, _, _ = _names()
    _execute(f"DROP TABLE IF EXISTS {SIDE}")
    _execute(f"TRUNCATE {table}, rotator_fingerprint, rotator_shard, rotator_run RESTART IDENTITY")


def snapshot() -> bool:
    """Save the tokens, VACUUM ANALYZE, CHECKPOINT; return whether CHECKPOINT was allowed."""
    table, pk, token = _names()
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
    found = _execute(f"SELECT {pk} FROM {table} ORDER BY {pk} OFFSET %s LIMIT 1", [rows - 1])
    if found is None:
        raise AssertionError(f"unreachable: the table has fewer than {rows:,} rows")
    return found[0]


def verify(expected: int, total: int, upper: int | None) -> Verdict:
    """Exactly ``expected`` tokens changed (all with id <= ``upper``), none lost or added."""
    table, pk, token = _names()
    found = _execute(
        f"SELECT count(*), count(t.{pk}), "
        f"count(*) FILTER (WHERE t.{token} IS DISTINCT FROM o.token), "
        f"count(*) FILTER (WHERE t.{token} IS DISTINCT FROM o.token AND o.id > %s) "
        f"FROM {SIDE} o LEFT JOIN {table} t ON t.{pk} = o.id",
        [2**62 if upper is None else upper],
    )
    (count,) = _execute(f"SELECT count(*) FROM {table}") or (0,)
    saved, kept, changed, outside = found or (0, 0, 0, 0)
    ok = saved == total and kept == total and count == total and changed == expected
    ok = ok and outside == 0
    text = f"{changed:,}/{expected:,} changed"
    if not ok:
        text += f" (FAILED: {saved:,} saved, {kept:,} kept, {count:,} now, {outside:,} outside)"
    return Verdict(ok, text)
