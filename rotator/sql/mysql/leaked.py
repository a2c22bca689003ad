"""--leaked on MariaDB/MySQL: the dump's values travel by LOAD DATA from a pipe.

An ``INSERT ... VALUES`` would put every dump value, maybe a live secret, in
the general and slow logs (mysqlclient interpolates bind parameters). The
temporary table copies the column's exact type and collation (so the
semi-join compares as the column does); the values arrive as hex fields
through ``LOAD DATA LOCAL INFILE`` (load.py), in batches of bounded size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.errors import RotatorError
from rotator.sql.base import leaked_batches
from rotator.sql.mysql.errors import LOCAL_INFILE_REFUSED, MySQLdb, error_code
from rotator.sql.mysql.load import decode_sql, hex_field, load_from_pipe
from rotator.sql.names import Names
from rotator.target import Target


def create_sql(connection: BaseDatabaseWrapper, target: Target, name: str, hashed: bool) -> str:
    if hashed:
        return f"CREATE TEMPORARY TABLE {name} (v BINARY(32))"
    n = Names.of(connection, target)
    # IF(FALSE, col, NULL): the column's type and collation, nullable.
    return (
        f"CREATE TEMPORARY TABLE {name} ENGINE=InnoDB "
        f"SELECT IF(FALSE, {n.col}, NULL) AS v FROM {n.table} LIMIT 0"
    )


def load_sql(target: Target, name: str, path: str, hashed: bool) -> str:
    internal = "BinaryField" if hashed else target.field.get_internal_type()
    value = decode_sql(internal, "@v")
    return (
        f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {name} CHARACTER SET binary "
        f"(@v) SET v = {value}"
    )


def load(cursor: Any, target: Target, name: str, values: Iterator[Any], hashed: bool) -> int:
    """Load ``values`` into table ``name`` (v); return how many."""
    lines = 0
    for batch in leaked_batches(values):
        data = "".join(f"{hex_field(v)}\n" for v in batch).encode()
        try:
            load_from_pipe(cursor, lambda path: load_sql(target, name, path, hashed), data)
        except MySQLdb.MySQLError as exc:
            if error_code(exc) in LOCAL_INFILE_REFUSED:
                raise RotatorError(
                    f"LOAD DATA LOCAL INFILE was refused ({exc.args[0]}): --leaked values "
                    "travel that way so that no server log shows them; enable local_infile on "
                    "the server and add 'local_infile': 1 to the database's OPTIONS"
                ) from None
            raise
        lines += len(batch)
    return lines
