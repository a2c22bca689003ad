"""Where new values come from: the field's default, a dotted path, or the database.

``uuid.uuid4`` gets a fast path with the same source and format: one call to
``os.urandom`` for the whole batch, with the version and variant bits set in
C (``bytes.translate`` on strided slices) instead of one ``UUID`` object per
row. The values are uuid4 by construction and never leave as text.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.utils.module_loading import import_string

from .errors import RotatorError
from .target import Target

DATABASE = "database"

_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT_RFC4122 = bytes((b & 0x3F) | 0x80 for b in range(256))


def packed_uuid4(n: int) -> bytes:
    """``n`` random version-4 UUIDs, 16 bytes each, from ``os.urandom``."""
    buf = bytearray(os.urandom(16 * n))
    buf[6::16] = buf[6::16].translate(_VERSION_4)
    buf[8::16] = buf[8::16].translate(_VARIANT_RFC4122)
    return bytes(buf)


@dataclass(frozen=True)
class Tokens:
    """New values for one batch; ``packed`` when they are uuid4 bytes."""

    n: int
    packed: bytes | None = None
    values: list[Any] | None = None

    def python_values(self) -> list[Any]:
        if self.packed is not None:
            p = self.packed
            return [uuid.UUID(bytes=p[i : i + 16]) for i in range(0, len(p), 16)]
        if self.values is None:
            raise AssertionError("unreachable: server-side tokens have no Python values")
        return self.values

    def __repr__(self) -> str:
        return f"Tokens(n={self.n})"  # never the secrets themselves


@dataclass(frozen=True)
class Generator:
    name: str
    func: Callable[[], Any] | None

    @property
    def server_side(self) -> bool:
        return self.func is None

    @property
    def packed(self) -> bool:
        return self.func is uuid.uuid4

    def tokens(self, n: int) -> Tokens | None:
        if self.func is None:
            return None
        if self.packed:
            return Tokens(n, packed=packed_uuid4(n))
        func = self.func
        return Tokens(n, values=[func() for _ in range(n)])


def _name(func: Callable[[], Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


def resolve_generator(target: Target, spec: str | None) -> Generator:
    if spec == DATABASE:
        return Generator(DATABASE, None)
    if spec:
        try:
            func = import_string(spec)
        except ImportError as exc:
            raise RotatorError(f"--generator {spec!r} cannot be imported: {exc}") from None
        if not callable(func):
            raise RotatorError(f"--generator {spec!r} is not callable")
        return Generator(spec, func)
    default = target.field.default
    if not target.field.has_default() or not callable(default):
        raise RotatorError(
            f"{target.label!r} has no callable default to make new values; "
            "pass --generator dotted.path.to.callable"
        )
    return Generator(_name(default), default)
