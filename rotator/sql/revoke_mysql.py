"""MariaDB/MySQL revocation: the server copies the keys and deletes by joining them.

No DELETE ... RETURNING and no LIMIT in a multi-table DELETE: the window is
measured first (its size and last row number), then the rows of exactly that
range of row numbers are deleted by a join on the primary key.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.sql.base import Outcome, Window
from rotator.sql.names import Names
from rotator.sql.revoke_base import ServerSnapshot, integer_key, keys_table, seq_bounds
from rotator.target import Target


class RevokeMySQL(ServerSnapshot):
    key_text = "{}"

    def _sql(self, connection: BaseDatabaseWrapper, target: Target) -> tuple[str, str]:
        n = Names.of(connection, target)
        keys, key = keys_table(connection)
        measure = (
            f"SELECT count(*), CAST(max(seq) AS CHAR) FROM (SELECT seq FROM {keys} "
            "WHERE snapshot = %s AND seq > %s AND seq <= %s ORDER BY seq LIMIT %s) w"
        )
        # The key column's own type: an integer key compares as an integer (and uses its
        # index); a text key compares as text, in the database's collation.
        back = f"CAST(k.{key} AS SIGNED)" if integer_key(target) else f"k.{key}"
        delete = (
            f"DELETE t FROM {n.table} t JOIN {keys} k ON t.{n.pk} = {back} "
            "WHERE k.snapshot = %s AND k.seq > %s AND k.seq <= %s"
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
