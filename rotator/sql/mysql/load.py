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
