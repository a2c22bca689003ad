"""PostgreSQL's batch statement: SQL text with placeholders only, never a value.

The keyset window is numbered with row_number() and each row takes the new
value of the same number. The UPDATE repeats the key range, bounded by the
window's largest key, so PostgreSQL reads only the window through the
primary key index (see EXPLAIN in tests/test_sql.py). A row the application
deleted or re-valued while the batch ran is left alone and reported, and the
window, not the number of rows updated, says whether the shard is done.

Row locks the application holds: a batch first waits (up to the lock
timeout) for the window's first row alone, holding no other row
(``FIRST``). The statement then runs with a lock timeout of ``FAST_LOCK_TIMEOUT``
(50 ms), inside a savepoint: it either finds no row held (the common case, at
no extra cost) or fails soon and is run again as the ``skip`` form, which locks the
window's free rows with ``FOR UPDATE SKIP LOCKED`` and ends the window before
the first row held elsewhere (``Outcome.held``); the next batch starts there.
So a batch never waits on the application while holding other rows, and the
cursor never passes a row that was not rotated.

Estimates match the batch: each source of new values carries ``LIMIT`` (a
temporary table is never analysed), and the probe "is this new value taken?"
runs once per new value, before the join with the window, whose estimate
would otherwise multiply it.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.sql.names import Names
from rotator.target import Target

# The window, two ways: plainly (the fast path), or skipping rows held elsewhere.
_WIN = """\
win AS (
    SELECT {pk} AS k, {col} AS old, row_number() OVER (ORDER BY {pk}) AS rn
    FROM {table}
    WHERE {where}
    ORDER BY {pk}
    LIMIT %(limit)s
), held AS (
    SELECT NULL::text AS k WHERE false
)"""

_WIN_SKIP = """\
span AS (
    -- the window at the statement's snapshot; it locks nothing
    SELECT {pk} AS k FROM {table}
    WHERE {where}
    ORDER BY {pk}
    LIMIT %(limit)s
), got AS MATERIALIZED (
    -- the window's rows no one else holds, locked without waiting for the others
    SELECT {pk} AS k, {col} AS old FROM {table}
    WHERE {where} AND {pk} <= (SELECT k FROM span ORDER BY k DESC LIMIT 1)
    ORDER BY {pk}
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), held AS (
    -- the first row held elsewhere (or deleted meanwhile): the window ends before it
    SELECT k FROM span WHERE NOT EXISTS (SELECT FROM got WHERE got.k = span.k)
    ORDER BY k LIMIT 1
), win AS (
    SELECT k, old, row_number() OVER (ORDER BY k) AS rn FROM got
    WHERE NOT EXISTS (SELECT FROM held) OR k < (SELECT k FROM held)
)"""

_BATCH = """\
WITH {win}, new AS (
    SELECT s.token, s.rn, {free} AS free
    FROM (
        SELECT {token} AS token, row_number() OVER () AS rn FROM {source} LIMIT %(limit)s
    ) AS s{taken}
){fingerprint}, pair AS (
    -- a new value equal to the row's old one (a low-entropy generator) is no rotation:
    -- the row draws again, like a collision
    SELECT win.k, win.old, new.token, new.free AND new.token IS DISTINCT FROM win.old AS free
    FROM win JOIN new ON new.rn = win.rn
    WHERE {fill}
), last AS (
    -- not max(k): PostgreSQL has no max() for uuid keys
    SELECT k FROM win ORDER BY k DESC LIMIT 1
), upd AS (
    UPDATE {table} AS t SET {col} = pair.token
    FROM pair
    WHERE t.{pk} = pair.k AND pair.free AND {t_range}
        -- a value the application changed meanwhile is the application's
        AND t.{col} IS NOT DISTINCT FROM pair.old AND t.{pk} IS DISTINCT FROM %(keep)s::{cast}
    RETURNING t.{pk} AS k, t.xmin AS x
){writers}
SELECT
    (SELECT count(*) FROM win),
    (SELECT k::text FROM last),
    (SELECT count(*) FROM upd),
    (SELECT count(*) FROM win WHERE old IS NULL),
    (SELECT array_agg(k::text) FROM pair WHERE NOT free),
    (SELECT array_agg(k::text) FROM pair WHERE free AND k NOT IN (SELECT k FROM upd)),
    (SELECT k::text FROM held)"""

#: Waits (up to the lock timeout) for the window's first row alone, before the
#: batch holds any row of the window. Its key, and whether its value changed while
#: the batch waited (the subquery reads the statement's snapshot, the row its
#: newest version): a value the application wrote meanwhile is the application's.
#: Qualified: a bare "id" would sort by the text output column of that name.
FIRST = """\
SELECT {pk}::text,
    {col} IS DISTINCT FROM (SELECT s.{col} FROM {table} AS s WHERE s.{pk} = {table}.{pk})
FROM {table} WHERE {where} ORDER BY {table}.{pk} LIMIT 1 FOR UPDATE"""

#: A sweep's rows no other transaction holds, locked without waiting for the others
#: (each held one is then swept alone): a sweep never waits on the application while
#: holding other rows.
LOCK_FREE = """\
SELECT {pk}::text FROM {table} WHERE {pk} = ANY(%(keys)s::{cast}[])
ORDER BY {pk} FOR UPDATE SKIP LOCKED"""

#: How long the fast form may wait for a lock before the batch takes the skip
#: form: short enough that the application waits at most about one batch; long
#: enough that a concurrent worker's brief relation-extension lock (a heavyweight
#: lock too, so lock_timeout applies to it) does not send every batch there.
FAST_LOCK_TIMEOUT = "50ms"

#: gen_random_uuid() for --generator database: made on the server, never sent.
UUID4 = "gen_random_uuid()"


def ranges(
    connection: BaseDatabaseWrapper, target: Target, *, lower: bool, keys: bool
) -> tuple[str, str]:
    """The window's condition, and the UPDATE's (bounded by the window's last key)."""
    pk = Names.of(connection, target).pk
    cast = target.pk.cast_db_type(connection)
    if keys:
        return f"{pk} = ANY(%(keys)s::{cast}[])", f"t.{pk} = ANY(%(keys)s::{cast}[])"
    where, t_range = f"{pk} <= %(hi)s::{cast}", f"t.{pk} <= (SELECT k FROM last)"
    if lower:
        where = f"{pk} > %(lo)s::{cast} AND {where}"
        t_range = f"t.{pk} > %(lo)s::{cast} AND {t_range}"
    return where, t_range


def statement(
    connection: BaseDatabaseWrapper,
    target: Target,
    *,
    lower: bool,
    keys: bool,
    source: str | None,
    fill_nulls: bool,
    skip: bool,
    fingerprint: str | None = None,
    writers: str | None = None,
    probe: bool = True,
) -> str:
    """The batch statement; ``source`` None: new values made by the server;
    ``fingerprint``: an INSERT reading ``win`` (the window's rows and old values),
    run by the statement itself, unreferenced (PostgreSQL runs it all the same);
    ``writers``: an INSERT reading ``upd`` (the rows updated, and the xmin each got)."""
    n = Names.of(connection, target)
    where, t_range = ranges(connection, target, lower=lower, keys=keys)
    token, rows = ("token", source) if source else (UUID4, "generate_series(1, %(limit)s)")
    # Is the new value taken? One probe of the unique index per value: LATERAL with
    # LIMIT keeps the planner from hashing the whole table instead.
    free, taken = "true", ""
    if target.unique and probe:
        free = "taken.hit IS NULL"
        taken = (
            f"\n    LEFT JOIN LATERAL (SELECT 1 AS hit FROM {n.table} AS x"
            f" WHERE x.{n.col} = s.token LIMIT 1) AS taken ON true"
        )
    win = (_WIN_SKIP if skip else _WIN).format(pk=n.pk, col=n.col, table=n.table, where=where)
    return _BATCH.format(
        win=win,
        pk=n.pk,
        col=n.col,
        table=n.table,
        t_range=t_range,
        cast=target.pk.cast_db_type(connection),
        token=token,
        source=rows,
        free=free,
        taken=taken,
        fill="true" if fill_nulls else "win.old IS NOT NULL",
        fingerprint=f", fp AS (\n    {fingerprint}\n)" if fingerprint else "",
        writers=f", wr AS (\n    {writers}\n)" if writers else "",
    )
