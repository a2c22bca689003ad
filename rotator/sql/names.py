"""The quoted names of one target's table and columns, for every builder's SQL."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.service.target import Target


def column_of(field: models.Field) -> str:
    """``field``'s column name; django-stubs types it ``str | None`` (None: no column)."""
    column = field.column
    if not isinstance(column, str):
        # resolve_target() refuses fields without a column of the model's own table.
        raise AssertionError(f"unreachable: {field!r} has no column")
    return column


@dataclass(frozen=True)
class Names:
    """Quoted with the connection's ``ops.quote_name``: ready to put in SQL text."""

    table: str
    pk: str
    col: str

    @classmethod
    def of(cls, connection: BaseDatabaseWrapper, target: Target) -> Names:
        qn = connection.ops.quote_name
        return cls(
            table=qn(target.model._meta.db_table),
            pk=qn(column_of(target.pk)),
            col=qn(column_of(target.field)),
        )
