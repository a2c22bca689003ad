"""Any other database: the ORM's bulk_update (CASE WHEN), slow but portable."""

from __future__ import annotations

from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from ..generators import Generator, Tokens
from ..target import Target
from .base import Builder


class GenericBuilder(Builder):
    vendor = "generic"
    concurrent_writers = True

    def window(self, target: Target, lo: Any, hi: Any, limit: int) -> Any:
        qs = target.queryset().filter(pk__lte=hi)
        if lo is not None:
            qs = qs.filter(pk__gt=lo)
        return qs.order_by("pk").values_list("pk", flat=True)[:limit]

    def rotate(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        lo: Any,
        hi: Any,
        limit: int,
        tokens: Tokens | None,
    ) -> tuple[int, Any]:
        if tokens is None:
            raise AssertionError("unreachable: supports() refuses server-side generators")
        keys = list(self.window(target, lo, hi, limit))
        attname = target.field.attname
        objs = [
            target.model(**{target.pk.attname: key, attname: value})
            for key, value in zip(keys, tokens.python_values(), strict=False)
        ]
        target.queryset().bulk_update(objs, [target.field.name], batch_size=1000)
        return len(keys), (keys[-1] if keys else None)

    def describe(self, connection: BaseDatabaseWrapper, target: Target, gen: Generator) -> str:
        sql, _ = self.window(target, 0, 0, 1).query.sql_with_params()
        return f"{sql};\n-- then QuerySet.bulk_update() over those keys (UPDATE ... CASE WHEN)"
