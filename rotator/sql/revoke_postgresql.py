"""PostgreSQL revocation: the keys are copied and deleted by the server; never sent.

The window's keys are read from the snapshot and deleted in one statement;
``= ANY(ARRAY(...))`` makes the delete an index scan of the primary key
whatever the planner thinks of the window's size.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.sql.base import Outcome, Window
from rotator.sql.names import Names
from rotator.sql.revoke_base import ServerSnapshot, keys_table, seq_bounds
from rotator.target import Target

_DELETE = """\
WITH win AS (
    SELECT seq, {key} AS k FROM {keys}
    WHERE snapshot = %(snapshot)s AND seq > %(lo)s AND seq <= %(hi)s
    ORDER BY seq
    LIMIT %(limit)s
), gone AS (
    DELETE FROM {table} AS t
    WHERE t.{pk} = ANY(ARRAY(SELECT k::{cast} FROM win))
    RETURNING 1
)
SELECT (SELECT count(*) FROM win), (SELECT max(seq)::text FROM win), (SELECT count(*) FROM gone)"""


class RevokePostgreSQL(ServerSnapshot):
    key_text = "{}::text"

    def _delete_sql(self, connection: BaseDatabaseWrapper, target: Target) -> str:
        n = Names.of(connection, target)
        keys, key = keys_table(connection)
        cast = target.pk.cast_db_type(connection)
        return _DELETE.format(key=key, keys=keys, table=n.table, pk=n.pk, cast=cast)

    def revoke_window(
        self, connection: BaseDatabaseWrapper, target: Target, snapshot: str, window: Window
    ) -> Outcome:
        lo, hi = seq_bounds(window)
        params: dict[str, Any] = {"snapshot": snapshot, "lo": lo, "hi": hi, "limit": window.limit}
        with connection.cursor() as cursor:
            cursor.execute(self._delete_sql(connection, target), params)
            seen, last, deleted = cursor.fetchone()
        return Outcome(seen=seen, last=last, rotated=deleted)

    def describe_revoke(self, connection: BaseDatabaseWrapper, target: Target) -> str:
        return self._delete_sql(connection, target)
