"""Reading a leaked dump with bounded memory, naming a bad line by its number only.

A dump is whatever an attacker or an incident left behind: any size, any
encoding, maybe no newline at all (``--leaked /dev/zero``). The file is read
in chunks of at most ``CHUNK`` bytes; a line (or a CSV record) longer than
``MAX_LINE`` bytes, a line that is not UTF-8 and a line with a NUL byte each
stop the read with one line naming the line number, never its content (which
may be a live secret).
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from rotator.errors import RotatorError

#: The longest line (or CSV record) a dump may have, in bytes.
MAX_LINE = 64 * 1024
#: Bytes read at a time.
CHUNK = 64 * 1024


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as exc:
        raise RotatorError(f"cannot read --leaked file {str(path)!r}: {exc.strerror}") from None


def _too_long(path: Path, number: int) -> RotatorError:
    return RotatorError(
        f"line {number} of {str(path)!r} is longer than {MAX_LINE:,} bytes; a dump holds one "
        "value per line: check that this is the right file"
    )


def raw_lines(handle: BinaryIO, path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes with their newline) of every line, never more than MAX_LINE."""
    buffer = bytearray()
    number = 0
    while chunk := handle.read(CHUNK):
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", start)) != -1:
            number += 1
            if end - start > MAX_LINE:
                raise _too_long(path, number)
            yield number, bytes(buffer[start : end + 1])
            start = end + 1
        del buffer[:start]
        if len(buffer) > MAX_LINE:
            raise _too_long(path, number + 1)
    if buffer:
        yield number + 1, bytes(buffer)


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text with its newline) of every line, checked for UTF-8 and NUL."""
    with _open(path) as handle:
        for number, line in raw_lines(handle, path):
            if b"\0" in line:
                raise RotatorError(
                    f"line {number} of {str(path)!r} holds a NUL byte; a dump is text, one "
                    "value per line: fix or remove that line"
                )
            if number == 1 and line.startswith(codecs.BOM_UTF8):
                line = line[len(codecs.BOM_UTF8) :]
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                raise RotatorError(
                    f"line {number} of {str(path)!r} is not UTF-8 text; convert the file "
                    "(e.g. iconv -t UTF-8) or fix that line"
                ) from None
            yield number, text


def values_of(path: Path, column: str | None) -> Iterator[tuple[int, str]]:
    """(line number, text) of every non-empty value: a line, or a CSV column's field."""
    if column is None:
        for number, line in text_lines(path):
            text = line.strip()
            if text:
                yield number, text
        return
    yield from _csv_values(path, column)


class _Record:
    """Feeds csv.reader lines and bounds the bytes of one record (quoted newlines)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = text_lines(path)
        self.size = 0
        self.number = 0

    def __iter__(self) -> _Record:
        return self

    def __next__(self) -> str:
        self.number, line = next(self.lines)
        self.size += len(line)
        if self.size > MAX_LINE:
            raise _too_long(self.path, self.number)
        return line


def _csv_values(path: Path, column: str) -> Iterator[tuple[int, str]]:
    record = _Record(path)
    reader = csv.reader(record)

    def rows() -> Iterator[list[str]]:
        while True:
            record.size = 0
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error:
                # csv's message is not shown: never risk a piece of a value.
                raise RotatorError(
                    f"line {record.number} of {str(path)!r} is not valid CSV; fix that line, "
                    "or drop --leaked-column if the file holds one value per line"
                ) from None
            yield row

    found = rows()
    header = next(found, None) or []
    if column not in header:
        # Not the header's fields: in a file without one, they are a value.
        raise RotatorError(
            f"--leaked-column {column!r} is not a column of {str(path)!r}: none of the "
            f"{len(header)} fields of its first line (the header) is {column!r}"
        )
    index = header.index(column)
    for row in found:
        if index < len(row) and row[index].strip():
            yield reader.line_num, row[index].strip()
