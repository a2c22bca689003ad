"""Resolve ``app_label.Model.field`` to a model field that can be rotated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.db import models

from .errors import RotatorError


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

    def queryset(self) -> models.QuerySet:
        return self.model._base_manager.using(self.alias)

    def key_to_text(self, value: Any) -> str:
        return str(value)

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
    if not getattr(field, "concrete", False) or field.many_to_many or field.is_relation:
        raise RotatorError(f"{label!r} is not a plain column; only concrete fields can rotate")
    if field.primary_key:
        raise RotatorError(f"{label!r} is the primary key; rotate a secret column, not the key")
    if not field.unique:
        raise RotatorError(
            f"{label!r} is not unique; rotator only rotates unique secret columns "
            "(it retries on unique collisions)"
        )
    pk = model._meta.pk
    if (
        pk is None
        or len(getattr(pk, "fields", [pk])) != 1
        or pk.get_internal_type() == ("CompositePrimaryKey")
    ):
        raise RotatorError(f"{model._meta.label} has no single-column primary key to shard on")
    return Target(model=model, field=field, alias=alias)
