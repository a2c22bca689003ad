"""New values into MariaDB/MySQL without SQL text: LOAD DATA LOCAL INFILE from a pipe.

mysqlclient interpolates bind parameters into the query text, and the server
logs prepared statements with their values, so a value sent either way can
reach the general, slow or binary log. ``LOAD DATA LOCAL INFILE`` sends the
file's bytes after the statement, and the logs show only the statement. The
"file" is the read end of an anonymous pipe (``/dev/fd/N``), fed by a thread:
the values are never written to disk.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from rotator.errors import RotatorError
from rotator.sql.mysql.errors import LOCAL_INFILE_REFUSED, MySQLdb, error_code
from rotator.target import Target


def hex_field(value: Any) -> str:
    """One LOAD DATA field: the value's bytes in hex, so no escaping can go wrong."""
    if value is None:
        return "\\N"
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value).encode().hex()


def numbered_lines(values: Iterable[Any]) -> bytes:
    """``rn<TAB>hex`` lines, rn counting from 1."""
    return "".join(f"{rn}\t{hex_field(v)}\n" for rn, v in enumerate(values, 1)).encode()


def decode_sql(internal_type: str, var: str) -> str:
    """SQL that turns a hex field back into the column's value."""
    if internal_type == "BinaryField":
        return f"UNHEX({var})"
    return f"CONVERT(UNHEX({var}) USING utf8mb4)"


def load_sql(table: str, target: Target, path: str) -> str:
    """LOAD DATA of numbered hex lines from ``path`` into ``table`` (rn, v): quoted name."""
    value = decode_sql(target.field.get_internal_type(), "@v")
    return (
        f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {table} CHARACTER SET binary "
        f"(rn, @v) SET v = {value}"
    )


def load_from_pipe(cursor: Any, sql_for_path: Callable[[str], str], data: bytes) -> None:
    """Run the LOAD DATA LOCAL INFILE that ``sql_for_path`` makes, reading ``data``."""
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        # A LOAD that fails closes the read end below: the write then fails and ends.
        with contextlib.suppress(OSError), os.fdopen(write_fd, "wb") as pipe:
            pipe.write(data)

    feeder = threading.Thread(target=feed, name="rotator-load-data", daemon=True)
    feeder.start()
    try:
        cursor.execute(sql_for_path(f"/dev/fd/{read_fd}"))
    finally:
        os.close(read_fd)
        feeder.join()


def load_values(cursor: Any, target: Target, table: str, values: Iterable[Any]) -> None:
    """Replace the rows of ``table`` (rn, v) with ``values``, numbered from 1."""
    cursor.execute(f"DELETE FROM {table}")
    data = numbered_lines(values)
    try:
        load_from_pipe(cursor, lambda path: load_sql(table, target, path), data)
    except MySQLdb.MySQLError as exc:
        if error_code(exc) in LOCAL_INFILE_REFUSED:
            raise RotatorError(
                f"LOAD DATA LOCAL INFILE was refused ({exc.args[0]}): new values for "
                f"{target.label} travel that way so that no server log shows them; enable "
                "local_infile on the server and add 'local_infile': 1 to the database's "
                "OPTIONS"
            ) from None
        raise
