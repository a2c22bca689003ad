"""PostgreSQL: one statement per batch, tokens bound as one binary parameter.

The keyset window is numbered with row_number(); each row takes its token by
that number: a slice of one bytea (uuid4 fast path), an element of an
unnested array (any other generator), or gen_random_uuid() (--generator
database). The UPDATE repeats the key range, bounded by the window's largest
key, so PostgreSQL reads only the window through the primary key index
instead of hash-joining the table (see EXPLAIN in tests/test_sql.py).
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.db.backends.base.base import BaseDatabaseWrapper

from ..generators import Generator, Tokens
from ..target import Target
from .base import Builder

_WINDOW = """\
WITH win AS (
    SELECT w.k, {token} AS token
    FROM (
        SELECT {pk} AS k, row_number() OVER (ORDER BY {pk}) AS rn
        FROM {table}
        WHERE {lower}{pk} <= %(hi)s
        ORDER BY {pk}
        LIMIT %(limit)s
    ) AS w{join}
), last AS (
    -- not max(k): PostgreSQL has no max() for uuid keys
    SELECT k FROM win ORDER BY k DESC LIMIT 1
), upd AS (
    UPDATE {table} AS t SET {col} = win.token
    FROM win
    WHERE t.{pk} = win.k AND {t_lower}t.{pk} <= (SELECT k FROM last)
    RETURNING t.{pk} AS k
)
SELECT (SELECT count(*) FROM upd), (SELECT k FROM last)"""


class PostgreSQLBuilder(Builder):
    vendor = "postgresql"

    def supports(self, target: Target, generator: Generator) -> str | None:
        if generator.server_side and target.field.get_internal_type() != "UUIDField":
            return "--generator database (gen_random_uuid()) only fills UUID columns"
        return None

    def sql(self, connection: BaseDatabaseWrapper, target: Target, kind: str, lower: bool) -> str:
        qn = connection.ops.quote_name
        pk = qn(target.pk.column)
        join = ""
        if kind == "packed":
            token = (
                "encode(substring(%(tokens)s::bytea FROM (w.rn::int - 1) * 16 + 1 FOR 16),"
                " 'hex')::uuid"
            )
        elif kind == "values":
            token = "v.token"
            join = (
                f"\n    JOIN unnest(%(tokens)s::{target.field.db_type(connection)}[])"
                " WITH ORDINALITY AS v(token, rn) ON v.rn = w.rn"
            )
        elif kind == "database":
            token = "gen_random_uuid()"
        else:
            raise AssertionError("unreachable")
        return _WINDOW.format(
            token=token,
            join=join,
            pk=pk,
            table=qn(target.model._meta.db_table),
            col=qn(target.field.column),
            lower=f"{pk} > %(lo)s AND " if lower else "",
            t_lower=f"t.{pk} > %(lo)s AND " if lower else "",
        )

    @staticmethod
    def _kind(gen_or_tokens: Generator | Tokens | None) -> str:
        if gen_or_tokens is None:
            return "database"
        if isinstance(gen_or_tokens, Generator):
            return (
                "database"
                if gen_or_tokens.server_side
                else ("packed" if gen_or_tokens.packed else "values")
            )
        return "packed" if gen_or_tokens.packed is not None else "values"

    def rotate(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        lo: Any,
        hi: Any,
        limit: int,
        tokens: Tokens | None,
    ) -> tuple[int, Any]:
        kind = self._kind(tokens)
        params: dict[str, Any] = {
            "hi": self.prep_key(connection, target, hi),
            "limit": limit,
        }
        if lo is not None:
            params["lo"] = self.prep_key(connection, target, lo)
        if tokens is not None:
            params["tokens"] = (
                tokens.packed if kind == "packed" else self.prep_values(connection, target, tokens)
            )
        # A server-binding cursor on Django's own connection (same transaction):
        # the tokens travel as one binary parameter and are never logged.
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cur:
            cur.execute(self.sql(connection, target, kind, lo is not None), params)
            rows, last = cur.fetchone()
        return rows, last

    def describe(self, connection: BaseDatabaseWrapper, target: Target, gen: Generator) -> str:
        return self.sql(connection, target, self._kind(gen), lower=True)

    def connection_id(self, connection: BaseDatabaseWrapper) -> str:
        return f"postgresql:pid={connection.connection.info.backend_pid}"

    def interrupt(self, connection: BaseDatabaseWrapper) -> None:
        raw = connection.connection
        if raw is not None and not raw.closed:
            raw.cancel_safe(timeout=5)

    def is_unique_violation(self, exc: BaseException) -> bool:
        cause = exc.__cause__ or exc
        return isinstance(cause, psycopg.errors.UniqueViolation)
