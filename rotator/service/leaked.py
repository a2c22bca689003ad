"""--leaked FILE: how many values of a leaked dump are still in the table.

The file is streamed, never held, with bounded memory (dumpfile.py): the
builder loads its values into a temporary table without putting any in SQL
text (binary COPY on PostgreSQL, LOAD DATA LOCAL INFILE from a pipe on
MariaDB/MySQL, batched INSERTs on SQLite, which has no server log); then one semi-join
counts the table's rows holding any of them. Each value goes through the
field's own conversion first (``to_python`` then ``get_db_prep_value``), so
it compares the way the column stores it: an upper-case or hyphen-less UUID
still matches. With ``--leaked-hashed`` each line is the sha256 (hex) of a
value's text and the table's values are hashed on the server instead.
No value is printed or reaches a server log; a bad line (not UTF-8, a NUL byte,
longer than the column or than dumpfile.MAX_LINE) is named by its number.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connections, transaction

from rotator.errors import RotatorError
from rotator.service.dumpfile import values_of
from rotator.sql import builder_for
from rotator.target import Target

TEMP = "rotator_leaked"


@dataclass(frozen=True)
class Leaked:
    lines: int
    present: int


def dump_values(target: Target, path: Path, column: str | None, hashed: bool) -> Iterator[Any]:
    connection = connections[target.alias]
    field = target.field
    binary = field.get_internal_type() == "BinaryField"
    limit = None if binary else getattr(field, "max_length", None)
    for number, text in values_of(path, column):
        if hashed:
            try:
                digest = bytes.fromhex(text)
            except ValueError:
                digest = b""
            if len(digest) != 32:
                raise RotatorError(
                    f"line {number} of {str(path)!r} is not a sha256 in hex (64 hex digits); "
                    "drop --leaked-hashed if the file holds the values themselves"
                )
            yield digest
            continue
        try:
            value = field.to_python(text)
        except ValidationError:
            # Never the value itself: it is a secret.
            raise RotatorError(
                f"line {number} of {str(path)!r} is not a valid {field.get_internal_type()} "
                f"for {target.label}; fix or remove that line (use --leaked-column for a CSV, "
                "--leaked-hashed for sha256 hex)"
            ) from None
        if limit is not None and isinstance(value, str) and len(value) > limit:
            # Checked here, not by the server: its error would quote the value.
            raise RotatorError(
                f"line {number} of {str(path)!r} is longer than {target.label} holds "
                f"({limit:,} characters); fix or remove that line"
            )
        yield field.get_db_prep_value(value, connection, prepared=False)


def count_leaked(
    target: Target, path: Path, column: str | None = None, hashed: bool = False
) -> Leaked:
    """Stream ``path`` into a temporary table and count the table's rows holding its values."""
    connection = connections[target.alias]
    builder = builder_for(connection)
    count = builder.leaked_count(connection, target, TEMP, hashed)
    with transaction.atomic(using=target.alias), connection.cursor() as cursor:
        raw = cursor.cursor  # the driver's cursor: values never reach Django's query log
        builder.leaked_table(connection, target, raw, TEMP, hashed)
        try:
            values = dump_values(target, path, column, hashed)
            lines = builder.load_leaked(connection, target, raw, TEMP, values, hashed)
            raw.execute(count)
            present = int(raw.fetchone()[0])
        finally:
            with contextlib.suppress(Exception):
                raw.execute(f"DROP TABLE IF EXISTS {TEMP}")
    return Leaked(lines=lines, present=present)


def report(leaked: Leaked, target: Target, path: Path) -> str:
    return (
        f"{leaked.present:,} of the {leaked.lines:,} leaked values in {str(path)!r} are still "
        f"in {target.label}"
    )
