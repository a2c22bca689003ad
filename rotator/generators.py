"""Where new values come from: the field's default, a dotted path, or the database.

``uuid.uuid4`` gets a fast path with the same source and format: one call to
``os.urandom`` for the whole batch, with the version and variant bits set in
C (``bytes.translate`` on strided slices) instead of one ``UUID`` object per
row. The values are uuid4 by construction and never leave as text. On a
database with a uuid type the bytes go to the column as they are, so the path
is taken there only where that is what ``save()`` stores (``values.packs_uuid4``);
elsewhere builders unpack them and convert each through ``values.db_values``.

A generator that raises is reported by the type of its exception only: the
message may hold the value it was making.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import import_module
from typing import Any

from django.db import connections
from django.utils.module_loading import import_string

from rotator import value_space
from rotator.errors import RotatorError
from rotator.target import Target
from rotator.values import ValueRefused, check_values, native_uuid, packs_uuid4

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
    #: The generator's name, for error messages (never the values).
    source: str = "the generator"

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
    #: uuid4 bytes in bulk are what save() stores (see values.packs_uuid4).
    packed: bool = False
    #: The field's pre_save() stores something else than the new value (e.g. its hash).
    derived: bool = False
    #: Values made for the up-front check, handed out first (workers share them).
    _spare: list[Any] = field(default_factory=list, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @property
    def server_side(self) -> bool:
        return self.func is None

    def put_back(self, values: list[Any]) -> None:
        """Keep unused values (the checked samples) for the next tokens()."""
        with self._lock:
            self._spare[:0] = values

    def tokens(self, n: int) -> Tokens | None:
        if self.func is None:
            return None
        if self.packed:
            return Tokens(n, packed=packed_uuid4(n), source=self.name)
        func = self.func
        with self._lock:
            values = self._spare[:n]
            del self._spare[:n]
        try:
            values += [func() for _ in range(n - len(values))]
        except Exception as exc:
            raise ValueRefused(
                f"generator {self.name!r} raised {type(exc).__name__} (message withheld: it may "
                "hold a secret; call the generator in `manage.py shell` to see it)"
            ) from None
        return Tokens(n, values=values, source=self.name)


def _name(func: Callable[[], Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


def resolve_generator(target: Target, spec: str | None, space: bool = True) -> Generator:
    """The generator named by ``spec`` (or the field's default), checked on a few values,
    and (``space``) on a sample large enough to tell whether it can fill a unique column."""
    generator = _resolve(target, spec)
    connection = connections[target.alias]
    if (
        generator.server_side
        and connection.features.has_native_uuid_field
        and not native_uuid(target, connection)
    ):
        raise RotatorError(
            f"--generator database (gen_random_uuid()) only fills a models.UUIDField on a native "
            f"uuid column; {target.label!r} is a {type(target.field).__name__} "
            f"({target.field.db_type(connection)}): pass --generator uuid.uuid4"
        )
    # Packed uuid4 bytes go to the column as they are only where that is what save()
    # stores; on databases without a uuid type builders unpack them and convert each.
    if generator.func is uuid.uuid4 and (
        packs_uuid4(target, connection, generator.func)
        or not connection.features.has_native_uuid_field
    ):
        generator = replace(generator, packed=True)
    check = check_values(target, generator, connection)
    generator = replace(generator, derived=check.derived)
    # The checked values are the first ones stored: a generator is called as often
    # as rows need values, and the values that passed the check are the ones used.
    generator.put_back(check.samples)
    if space:
        check_space(target, generator)
    return generator


def check_space(target: Target, generator: Generator) -> None:
    """Refuse a generator whose values are too few for the unique column's rows."""
    if not target.unique or generator.server_side or generator.packed:
        return
    from rotator.sql import builder_for  # the dialects import this module

    connection = connections[target.alias]
    rows = builder_for(connection).row_estimate(connection, target)
    k = value_space.sample_size(rows)
    if k < 2:
        return
    try:
        tokens = generator.tokens(k)
    except ValueRefused as exc:
        raise ValueRefused(exc.reason, started=False) from None
    if tokens is None:
        raise AssertionError("unreachable: a Python generator makes tokens")
    values = tokens.python_values()
    generator.put_back(values)  # still the first values stored, in the same order
    judged = value_space.judge(values, rows)
    if judged.too_small:
        raise ValueRefused(judged.reason(generator.name, target.label), started=False)


def import_attribute(spec: str) -> Any:
    """What a dotted path names: a module's attribute, or a class's attribute at any depth.

    ``import_string`` imports everything before the last dot as a module, so
    ``rest_framework.authtoken.models.Token.generate_key`` fails ("models is not a
    package"). Then the longest importable prefix is the module and the rest is
    looked up with getattr: a classmethod or staticmethod comes out callable with
    no arguments, like any other generator.
    """
    try:
        return import_string(spec)
    except ImportError as exc:
        error = exc
    parts = spec.split(".")
    for cut in range(len(parts) - 2, 0, -1):
        try:
            found: Any = import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        if not hasattr(found, parts[cut]):
            break  # nothing of the path is there: import_string's message says it best
        try:
            for name in parts[cut:]:
                found = getattr(found, name)
        except AttributeError:
            raise RotatorError(
                f"--generator {spec!r} cannot be imported: {'.'.join(parts[:cut])!r} has no "
                f"attribute {'.'.join(parts[cut:])!r}"
            ) from None
        return found
    raise RotatorError(f"--generator {spec!r} cannot be imported: {error}") from None


def _resolve(target: Target, spec: str | None) -> Generator:
    if spec == DATABASE:
        return Generator(DATABASE, None)
    if spec:
        func = import_attribute(spec)
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
