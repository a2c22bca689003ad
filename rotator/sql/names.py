"""The quoted names of one target's table and columns, for every builder's SQL."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.target import Target, column_of


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
