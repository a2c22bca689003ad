"""--leaked FILE: how many values of a leaked dump are still in the table.

The file is streamed, never held: on PostgreSQL its values are COPied into a
temporary table, elsewhere inserted into one in batches; then one semi-join
counts the table's rows holding any of them. Each value goes through the
field's own conversion first (``to_python`` then ``get_db_prep_value``), so
it compares the way the column stores it: an upper-case or hyphen-less UUID
still matches. With ``--leaked-hashed`` each line is the sha256 (hex) of a
value's text and the table's values are hashed on the server instead.
No value is printed; a bad line is named by its number.
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connections, transaction

from rotator.errors import RotatorError
from rotator.service.target import Target
from rotator.sql.digests import digests_for

TEMP = "rotator_leaked"
#: Values per INSERT batch where there is no COPY.
BATCH = 5_000


@dataclass(frozen=True)
class Leaked:
    lines: int
    present: int


def _lines(path: Path, column: str | None) -> Iterator[tuple[int, str]]:
    """(line number, text) of every non-empty value, streamed."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise RotatorError(f"cannot read --leaked file {str(path)!r}: {exc.strerror}") from None
    with handle:
        if column is None:
            for number, line in enumerate(handle, 1):
                text = line.strip()
                if text:
                    yield number, text
            return
        reader = csv.reader(handle)
        header = next(reader, None) or []
        if column not in header:
            names = ", ".join(repr(h) for h in header) or "none"
            raise RotatorError(
                f"--leaked-column {column!r} is not a column of {str(path)!r}; "
                f"its header has: {names}"
            )
        index = header.index(column)
        for row in reader:
            if index < len(row) and row[index].strip():
                yield reader.line_num, row[index].strip()


def _values(target: Target, path: Path, column: str | None, hashed: bool) -> Iterator[Any]:
    connection = connections[target.alias]
    field = target.field
    for number, text in _lines(path, column):
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
        yield field.get_db_prep_value(value, connection, prepared=False)


def count_leaked(
    target: Target, path: Path, column: str | None = None, hashed: bool = False
) -> Leaked:
    """Stream ``path`` into a temporary table and count the table's rows holding its values."""
    connection = connections[target.alias]
    qn = connection.ops.quote_name
    d = digests_for(connection, target, alias="t.")
    table = qn(target.model._meta.db_table)
    column_type = "bytea" if hashed else target.field.db_type(connection)
    if hashed and connection.vendor != "postgresql":
        column_type = "BLOB"
    probe = d.sha256 if hashed else f"t.{qn(target.field.column)}"
    lines = 0
    with transaction.atomic(using=target.alias), connection.cursor() as cursor:
        raw = cursor.cursor  # the driver's cursor: values never reach Django's query log
        temporary = "TEMPORARY TABLE" if connection.vendor != "sqlite" else "TEMP TABLE"
        raw.execute(f"DROP TABLE IF EXISTS {TEMP}")
        raw.execute(f"CREATE {temporary} {TEMP} (v {column_type})")
        try:
            values = _values(target, path, column, hashed)
            if connection.vendor == "postgresql":
                with raw.copy(f"COPY {TEMP} (v) FROM STDIN") as copy:
                    for value in values:
                        copy.write_row((value,))
                        lines += 1
                raw.execute(f"ANALYZE {TEMP}")
            else:
                insert = f"INSERT INTO {TEMP} (v) VALUES ({d.param})"
                while batch := [(v,) for v in islice(values, BATCH)]:
                    raw.executemany(insert, batch)
                    lines += len(batch)
            raw.execute(f"SELECT count(*) FROM {table} t WHERE {probe} IN (SELECT v FROM {TEMP})")
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
