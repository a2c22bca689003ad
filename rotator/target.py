"""Resolve ``app_label.Model.field`` to a model field that can be rotated.

Refused up front, with the reason: fields that are not a column of the
model's own table (reverse relations, many-to-many, a multi-table-inheritance
parent's field), references (ForeignKey, OneToOneField), the primary key,
arrays, and a column that another table's ForeignKey points to (``to_field``).

Rows are always read from the raw table, never through a model manager: after
a leak every row's secret must change, including rows that a filtering
``Meta.base_manager_name`` hides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.db import models

from rotator.errors import RotatorError


def column_of(field: models.Field) -> str:
    """``field``'s column name; django-stubs types it ``str | None`` (None: no column)."""
    column = field.column
    if not isinstance(column, str):
        # resolve_target() refuses fields without a column of the model's own table.
        raise AssertionError(f"unreachable: {field!r} has no column")
    return column


@dataclass(frozen=True)
class Target:
    model: type[models.Model]
    field: models.Field
    alias: str

    @property
    def label(self) -> str:
        return f"{self.model._meta.label}.{self.field.name}"

    @property
    def model_label(self) -> str:
        return self.model._meta.label

    @property
    def pk(self) -> models.Field:
        return self.model._meta.pk

    @property
    def column(self) -> str:
        """The rotated column's name in the database."""
        return column_of(self.field)

    @property
    def unique(self) -> bool:
        """Whether some unique constraint covers the column (new values can then collide)."""
        return is_unique(self.model, self.field)

    def queryset(self) -> models.QuerySet:
        """Every row of the table: no manager, so no ``base_manager_name`` filter."""
        return models.QuerySet(model=self.model, using=self.alias)

    def null_rows(self) -> int:
        """How many rows hold NULL in the column (they stay NULL unless --fill-nulls)."""
        if not self.field.null:
            return 0
        return self.queryset().filter(**{f"{self.field.name}__isnull": True}).count()

    def key_from_text(self, text: str | None) -> Any:
        return None if text is None else self.pk.to_python(text)


def resolve_target(label: str, alias: str) -> Target:
    parts = label.split(".")
    if len(parts) != 3 or not all(parts):
        raise RotatorError(f"{label!r} is not a model field; expected app_label.Model.field")
    app_label, model_name, field_name = parts
    try:
        model = apps.get_model(app_label, model_name)
    except LookupError:
        raise RotatorError(
            f"{app_label}.{model_name!s} is not an installed model; "
            f"expected app_label.Model.field, got {label!r}"
        ) from None
    try:
        field = model._meta.get_field(field_name)
    except FieldDoesNotExist:
        raise RotatorError(
            f"{model._meta.label} has no field {field_name!r}; expected app_label.Model.field"
        ) from None
    _check_column(label, model, field)
    pk = model._meta.pk
    if (
        pk is None
        or len(getattr(pk, "fields", [pk])) != 1
        or pk.get_internal_type() == ("CompositePrimaryKey")
    ):
        raise RotatorError(f"{model._meta.label} has no single-column primary key to shard on")
    return Target(model=model, field=field, alias=alias)


def _check_column(label: str, model: type[models.Model], field: Any) -> None:
    if field.is_relation and getattr(field, "concrete", False) and not field.many_to_many:
        other = field.related_model._meta.label
        raise RotatorError(
            f"{label!r} is a {type(field).__name__} (a reference to {other}), not a secret; "
            "rotate a column that holds a secret"
        )
    if not getattr(field, "concrete", False) or field.many_to_many:
        raise RotatorError(
            f"{label!r} is not a column of {model._meta.label}'s table; "
            "only concrete fields can rotate"
        )
    if field.model._meta.concrete_model is not model._meta.concrete_model:
        parent = f"{field.model._meta.label}.{field.name}"
        raise RotatorError(
            f"{label!r} lives on the parent table {field.model._meta.db_table!r}; "
            f"rotate {parent!r} instead (it covers every {model._meta.label} row)"
        )
    if field.primary_key:
        raise RotatorError(f"{label!r} is the primary key; rotate a secret column, not the key")
    if _is_array(field):
        raise RotatorError(
            f"{label!r} is an {type(field).__name__}; rotator rotates one value per row, not arrays"
        )
    referenced = _referenced_by(field)
    if referenced:
        raise RotatorError(
            f"{label!r} is referenced by {referenced} (to_field={field.name!r}); new values "
            "would break those references: rotate a column no ForeignKey points to"
        )


def _is_array(field: models.Field) -> bool:
    try:
        from django.contrib.postgres.fields import ArrayField
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(field, ArrayField)


def _referenced_by(field: models.Field) -> str | None:
    """The first ForeignKey of any installed model that points at this column."""
    table, column = field.model._meta.db_table, field.column
    for model in apps.get_models(include_auto_created=True):
        for f in model._meta.local_fields:
            if not (f.is_relation and f.concrete and f.remote_field):
                continue
            for target_field in getattr(f, "foreign_related_fields", ()):
                if target_field.model._meta.db_table == table and target_field.column == column:
                    return f"{model._meta.label}.{f.name}"
    return None


def is_unique(model: type[models.Model], field: models.Field) -> bool:
    """True if ``unique=True``, ``unique_together`` or any ``UniqueConstraint`` covers it."""
    if field.unique:
        return True
    concrete = model._meta.concrete_model
    if concrete is None:
        raise AssertionError("unreachable: a model always has a concrete model")
    meta = concrete._meta
    names = {field.name, field.attname}
    if any(names & set(together) for together in meta.unique_together):
        return True
    for constraint in meta.constraints:
        if not isinstance(constraint, models.UniqueConstraint):
            continue
        if names & set(constraint.fields):
            return True
        for expression in constraint.expressions:
            refs: list[Any] = list(getattr(expression, "flatten", lambda: [])())
            if any(isinstance(e, models.F) and getattr(e, "name", None) in names for e in refs):
                return True
    return False
