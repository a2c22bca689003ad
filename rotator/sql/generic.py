"""Any other database: the ORM's bulk_update (CASE WHEN), slow but portable."""

from __future__ import annotations

from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.generators import Generator, Tokens
from rotator.sql.base import Builder, Fingerprinting, Outcome, Window
from rotator.sql.revoke_base import Revoking
from rotator.target import Target
from rotator.values import saved_values


class GenericBuilder(Revoking, Builder):
    vendor = "generic"
    concurrent_writers = True

    def window(self, target: Target, lo: Any, hi: Any, limit: int) -> Any:
        qs = target.queryset().filter(pk__lte=target.pk.to_python(hi))
        if lo is not None:
            qs = qs.filter(pk__gt=target.pk.to_python(lo))
        return qs.order_by("pk").values_list("pk", target.field.attname)[:limit]

    def _apply(
        self, target: Target, rows: list[tuple[Any, Any]], tokens: Tokens, fill: bool
    ) -> Outcome:
        keys = [key for key, old in rows if fill or old is not None]
        # What save() would store (pre_save() applied, checked); bulk_update converts.
        values = saved_values(
            target, connections[target.alias], tokens.python_values()[: len(keys)], tokens.source
        )
        attname = target.field.attname
        taken: set[Any] = set()
        if target.unique:
            lookup = {f"{attname}__in": values}
            taken = set(target.queryset().filter(**lookup).values_list(attname, flat=True))
        objs, collided = [], []
        for key, value in zip(keys, values, strict=True):
            if value in taken:
                collided.append(key)
                continue
            taken.add(value)
            objs.append(target.model(**{target.pk.attname: key, attname: value}))
        target.queryset().bulk_update(objs, [target.field.name], batch_size=1000)
        return Outcome(
            seen=len(rows),
            last=str(rows[-1][0]) if rows else None,
            rotated=len(objs),
            nulls=len(rows) - len(keys),
            collided=collided,
        )

    def rotate(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        window: Window,
        tokens: Tokens | None,
        fill_nulls: bool,
        fingerprints: Fingerprinting | None = None,
    ) -> Outcome:
        if tokens is None:
            raise AssertionError("unreachable: supports() refuses server-side generators")
        rows = list(self.window(target, window.lo, window.hi, window.limit))
        return self._apply(target, rows, tokens, fill_nulls)

    def rotate_keys(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        keys: list[Any],
        tokens: Tokens | None,
        fill_nulls: bool,
        fingerprints: Fingerprinting | None = None,
    ) -> Outcome:
        if tokens is None:
            raise AssertionError("unreachable: supports() refuses server-side generators")
        qs = target.queryset().filter(pk__in=keys).order_by("pk")
        return self._apply(
            target, list(qs.values_list("pk", target.field.attname)), tokens, fill_nulls
        )

    def describe(self, connection: BaseDatabaseWrapper, target: Target, gen: Generator) -> str:
        sql, _ = self.window(target, "0", "0", 1).query.sql_with_params()
        return f"{sql};\n-- then QuerySet.bulk_update() over those keys (UPDATE ... CASE WHEN)"
