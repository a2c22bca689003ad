"""From a generator's output to what ``save()`` would store, or one line that says why not.

Every builder turns a batch of new Python values into database values here,
so every path stores what ``Model.save()`` would:

- None is refused: a rotation never replaces a secret with NULL.
- A field that derives its stored value in ``pre_save()`` (a hashing field)
  gets it applied, on an instance that holds only the new value. If that
  ``pre_save()`` reads another column (a checksum of ``token``, a
  ``hash_client_secret`` flag), the stored value would differ per row:
  refused, naming the column.
- ``get_db_prep_save()`` converts each value (encrypting fields encrypt, a
  hex-UUID field makes hex).
- A value longer than a ``varchar(N)``/``char(N)`` column fails as ``save()``
  would where the database enforces the length (everywhere but SQLite);
  it is never cut.

Errors never show a value: a generator's output is a secret.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.base import ModelState

from rotator.errors import RotatorError
from rotator.target import Target

#: A column type that holds at most N characters: ``varchar(32)``, ``char(8)``, ...
_LIMITED = re.compile(
    r"^\s*(?:varchar|character varying|char|character|nvarchar2?|varchar2|nchar)\s*\((\d+)",
    re.IGNORECASE,
)
#: How many values check_values() makes before anything changes.
SAMPLES = 4


class ValueRefused(RotatorError):
    """A new value that the field or the column would not take as ``save()`` does."""

    def __init__(self, reason: str, *, started: bool = True) -> None:
        self.reason = reason
        then = (
            # the engine adds the rows done and the command that resumes
            "no batch was half-applied, fix it first" if started else "nothing was changed"
        )
        super().__init__(f"{reason}; {then}")


@dataclass(frozen=True)
class ValueCheck:
    """What check_values() learnt from the sample values."""

    #: The field's ``pre_save()`` turns the new value into another one (e.g. a hash).
    derived: bool
    #: The Python values checked (not yet stored; never shown).
    samples: list[Any] = dataclasses.field(default_factory=list, repr=False)


def length_limit(target: Target, connection: BaseDatabaseWrapper) -> int | None:
    """The most characters the column takes on this database, or None if unbounded there."""
    from rotator.sql import builder_for  # the dialects import this module

    if not builder_for(connection).enforces_length:
        return None
    db_type = target.field.db_type(connection) or ""
    match = _LIMITED.match(db_type)
    return int(match.group(1)) if match else None


def has_pre_save(field: models.Field) -> bool:
    return type(field).pre_save is not models.Field.pre_save


def native_uuid(target: Target, connection: BaseDatabaseWrapper) -> bool:
    """Whether a database ``uuid`` value, as is, is what save() stores in the column.

    Only for exactly ``models.UUIDField`` (a subclass may store another form)
    on a native ``uuid`` column.
    """
    field = target.field
    return (
        type(field) is models.UUIDField
        and bool(connection.features.has_native_uuid_field)
        and field.db_type(connection) == "uuid"
    )


def packs_uuid4(target: Target, connection: BaseDatabaseWrapper, func: Any) -> bool:
    """Whether 16 raw uuid4 bytes per row (the fast path) are what save() stores."""
    return func is uuid.uuid4 and native_uuid(target, connection)


class _ReadsColumn(Exception):
    pass


class _Recorder:
    """Stands in for the model instance given to ``pre_save()``; stops at another column."""

    def __init__(self, instance: models.Model, columns: set[str]) -> None:
        object.__setattr__(self, "_instance", instance)
        object.__setattr__(self, "_columns", columns)
        object.__setattr__(self, "read", [])

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance() checks in pre_save() see the model
        return type(object.__getattribute__(self, "_instance"))

    def __getattr__(self, name: str) -> Any:
        if name in object.__getattribute__(self, "_columns"):
            object.__getattribute__(self, "read").append(name)
            raise _ReadsColumn(name)
        return getattr(object.__getattribute__(self, "_instance"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_instance"), name, value)

    def __str__(self) -> str:  # log lines in pre_save() name the instance
        return f"{self.__class__.__name__} being rotated"

    __repr__ = __str__


def _other_columns(target: Target) -> set[str]:
    field = target.field
    names = {"pk"}
    for f in target.model._meta.concrete_fields:
        if f is not field:
            names.update({f.name, f.attname})
    return names - {field.name, field.attname}


def _pre_saver(target: Target, generator: str) -> Callable[[Any], Any]:
    """A function applying the field's ``pre_save()`` as an UPDATE by ``save()`` would."""
    field, model = target.field, target.model
    columns = _other_columns(target)

    def apply(value: Any) -> Any:
        instance = model.__new__(model)
        instance._state = ModelState()
        instance._state.adding = False
        instance.__dict__[field.attname] = value
        recorder = _Recorder(instance, columns)
        try:
            result = field.pre_save(cast(models.Model, recorder), False)
        except _ReadsColumn:
            result = None
        except Exception as exc:
            raise ValueRefused(
                f"{type(field).__name__}.pre_save() of {target.label!r} raised "
                f"{type(exc).__name__} on a value of generator {generator!r} (value withheld)"
            ) from None
        if recorder.read:
            names = ", ".join(sorted(set(recorder.read)))
            raise ValueRefused(
                f"{target.label!r} cannot rotate: {type(field).__name__}.pre_save() computes "
                f"the stored value from other columns ({names}), which rotator does not read, so "
                "save() may store something else per row; change it with save() instead"
            )
        return result

    return apply


def _feeds(target: Target) -> str | None:
    """Another field whose ``pre_save()`` computes its value from this column, if any."""
    mine = {target.field.name, target.field.attname}
    for other in target.model._meta.concrete_fields:
        if other is target.field or not has_pre_save(other):
            continue
        instance = target.model.__new__(target.model)
        instance._state = ModelState()
        instance.__dict__[other.attname] = ""
        recorder = _Recorder(instance, mine)
        with contextlib.suppress(Exception):
            other.pre_save(cast(models.Model, recorder), False)
        if recorder.read:
            return f"{type(other).__name__} {target.model._meta.label}.{other.name}"
    return None


def check_field(target: Target) -> None:
    """Refuse a column that another field's ``pre_save()`` derives its value from."""
    derived = _feeds(target)
    if derived:
        raise ValueRefused(
            f"{target.label!r} cannot rotate alone: {derived} is computed from it in "
            "pre_save(), and would no longer match (the application looks rows up by it)",
            started=False,
        )


def _refusal(target: Target, generator: str, what: str) -> ValueRefused:
    return ValueRefused(f"generator {generator!r} for {target.label!r} {what}")


def db_values(
    target: Target,
    connection: BaseDatabaseWrapper,
    python_values: Iterable[Any],
    generator: str = "the generator",
) -> list[Any]:
    """The database values ``save()`` would store for ``python_values``, in order.

    Raises ValueRefused (one line, no value in it) for a value ``save()``
    would not store or that must never be stored (NULL).
    """
    return _convert(target, connection, python_values, generator)[0]


def saved_values(
    target: Target,
    connection: BaseDatabaseWrapper,
    python_values: Iterable[Any],
    generator: str = "the generator",
) -> list[Any]:
    """Like db_values(), but the Python values after ``pre_save()`` (for the ORM's bulk_update,
    which converts them itself and never calls ``pre_save()``)."""
    return _convert(target, connection, python_values, generator)[1]


def _convert(
    target: Target, connection: BaseDatabaseWrapper, python_values: Iterable[Any], generator: str
) -> tuple[list[Any], list[Any], bool]:
    field = target.field
    pre_save = _pre_saver(target, generator) if has_pre_save(field) else None
    limit = length_limit(target, connection)
    out = []
    saved_out = []
    derived = False
    for value in python_values:
        if value is None:
            raise _refusal(
                target, generator, "returned None; a rotation never replaces a secret with NULL"
            )
        if pre_save is not None:
            saved = pre_save(value)
            derived = derived or saved != value
            value = saved
        try:
            stored = field.get_db_prep_save(value, connection)
        except Exception as exc:
            raise _refusal(
                target,
                generator,
                f"made a value that {type(field).__name__} cannot store "
                f"({type(exc).__name__}; value withheld)",
            ) from None
        if stored is None:
            raise _refusal(
                target,
                generator,
                f"made a value that {type(field).__name__} stores as NULL; a rotation never "
                "replaces a secret with NULL",
            )
        if limit is not None and isinstance(stored, str) and len(stored) > limit:
            raise _refusal(
                target,
                generator,
                f"made a value of {len(stored)} characters (value withheld), too long for the "
                f"{field.db_type(connection)} column; save() fails on {connection.vendor} "
                "and rotator never cuts a value: make shorter values or widen the column",
            )
        out.append(stored)
        saved_out.append(value)
    return out, saved_out, derived


def check_values(target: Target, generator: Any, connection: BaseDatabaseWrapper) -> ValueCheck:
    """Make a few values and put them through db_values() before anything changes."""
    check_field(target)
    if generator.server_side:
        return ValueCheck(derived=False)
    try:
        tokens = generator.tokens(SAMPLES)
        values = tokens.python_values()
        _, _, derived = _convert(target, connection, values, generator.name)
    except ValueRefused as exc:
        raise ValueRefused(exc.reason, started=False) from None
    return ValueCheck(derived=derived, samples=[] if tokens.packed else values)
