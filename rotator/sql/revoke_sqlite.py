"""SQLite revocation: the keys are copied and deleted in SQL (one writer, no server log)."""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.sql.base import Outcome, Window
from rotator.sql.names import Names
from rotator.sql.revoke_base import ServerSnapshot, integer_key, keys_table, seq_bounds
from rotator.target import Target


class RevokeSQLite(ServerSnapshot):
    def _sql(self, connection: BaseDatabaseWrapper, target: Target) -> tuple[str, str]:
        n = Names.of(connection, target)
        keys, key = keys_table(connection)
        measure = (
            f"SELECT count(*), CAST(max(seq) AS TEXT) FROM (SELECT seq FROM {keys} "
            "WHERE snapshot = %s AND seq > %s AND seq <= %s ORDER BY seq LIMIT %s)"
        )
        back = f"CAST({key} AS INTEGER)" if integer_key(target) else key
        delete = (
            f"DELETE FROM {n.table} WHERE {n.pk} IN (SELECT {back} FROM {keys} "
            "WHERE snapshot = %s AND seq > %s AND seq <= %s)"
        )
        return measure, delete

    def revoke_window(
        self, connection: BaseDatabaseWrapper, target: Target, snapshot: str, window: Window
    ) -> Outcome:
        lo, hi = seq_bounds(window)
        measure, delete = self._sql(connection, target)
        with connection.cursor() as cursor:
            cursor.execute(measure, [snapshot, lo, hi, window.limit])
            seen, last = cursor.fetchone()
            if not seen:
                return Outcome()
            cursor.execute(delete, [snapshot, lo, int(last)])
            return Outcome(seen=seen, last=last, rotated=int(cursor.rowcount))

    def describe_revoke(self, connection: BaseDatabaseWrapper, target: Target) -> str:
        return ";\n".join(self._sql(connection, target))
