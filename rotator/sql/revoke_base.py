"""Revocation statements every builder has: copy the planned keys, delete a window of them.

A revocation plans by copying the keys of the rows to delete into
``rotator_revocationkey`` (``seq`` numbers them in key order), on the server,
so shard bounds, cursors and bind parameters are row numbers, never keys
(which may be the secrets: a DRF token, a session key). A batch deletes the
rows whose keys are the next ``seq`` window. This class is the portable ORM
version (the generic builder); each vendor's mixin (``revoke_<vendor>.py``)
replaces it with set-based SQL.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.models import RevocationKey
from rotator.sql.base import Outcome, Window
from rotator.sql.names import Names
from rotator.target import Target

#: Keys per INSERT where the snapshot is made through the ORM (generic builder).
SNAPSHOT_BATCH = 5_000


def keys_table(connection: BaseDatabaseWrapper) -> tuple[str, str]:
    """RevocationKey's table and its ``key`` column, quoted."""
    qn = connection.ops.quote_name
    return qn(RevocationKey._meta.db_table), qn("key")


def integer_key(target: Target) -> bool:
    return isinstance(target.pk, models.IntegerField | models.AutoField)


def seq_bounds(window: Window) -> tuple[int, int]:
    """The window's (lo, hi] as row numbers; lo None: from the first."""
    return (0 if window.lo is None else int(window.lo)), int(window.hi)


def match_condition(
    builder: Any, connection: BaseDatabaseWrapper, target: Target, name: str, hashed: bool
) -> str:
    """Rows of ``t`` whose value (or its sha256) is in the loaded dump table ``name``."""
    n = Names.of(connection, target)
    probe = builder.digests(connection, target, alias="t.").sha256 if hashed else f"t.{n.col}"
    return f"{probe} IN (SELECT v FROM {name})"


class Revoking:
    """The revocation part of the Builder contract (mixed in before ``Builder``)."""

    def snapshot_keys(
        self, connection: BaseDatabaseWrapper, target: Target, snapshot: str, match: str | None
    ) -> int:
        """Copy the keys of the rows to delete (``match``: an SQL condition on ``t``, or
        every row) into RevocationKey, numbered 1.. in key order; return how many."""
        n = Names.of(connection, target)
        sql = f"SELECT t.{n.pk} FROM {n.table} t"
        if match:
            sql += f" WHERE {match}"
        sql += f" ORDER BY t.{n.pk}"
        seq = 0
        rows: list[RevocationKey] = []
        keys = RevocationKey.objects.using(target.alias)
        with connection.cursor() as cursor:
            cursor.execute(sql)
            while chunk := cursor.fetchmany(SNAPSHOT_BATCH):
                for (key,) in chunk:
                    seq += 1
                    rows.append(RevocationKey(snapshot=snapshot, seq=seq, key=str(key)))
                keys.bulk_create(rows)
                rows.clear()
        return seq

    def revoke_window(
        self, connection: BaseDatabaseWrapper, target: Target, snapshot: str, window: Window
    ) -> Outcome:
        """Delete the rows of the window's planned keys; ``rotated`` counts the deleted."""
        lo, hi = seq_bounds(window)
        planned = list(
            RevocationKey.objects.using(target.alias)
            .filter(snapshot=snapshot, seq__gt=lo, seq__lte=hi)
            .order_by("seq")
            .values_list("seq", "key")[: window.limit]
        )
        if not planned:
            return Outcome()
        keys = [target.pk.to_python(key) for _, key in planned]
        # _raw_delete: one DELETE, no Collector (resolve_revocation() refused every
        # model whose delete() would do more than that).
        deleted = target.queryset().filter(pk__in=keys)._raw_delete(target.alias)
        return Outcome(seen=len(planned), last=str(planned[-1][0]), rotated=deleted)

    def describe_revoke(self, connection: BaseDatabaseWrapper, target: Target) -> str:
        """The SQL of one revocation batch, with placeholders, for --dry-run."""
        n = Names.of(connection, target)
        return (
            "SELECT seq, key FROM rotator_revocationkey WHERE snapshot = %s AND seq > %s "
            f"AND seq <= %s ORDER BY seq LIMIT %s;\nDELETE FROM {n.table} WHERE {n.pk} IN "
            "(the keys of those rows)"
        )


class ServerSnapshot(Revoking):
    """The vendors' ``snapshot_keys``: one INSERT ... SELECT, so no key leaves the server."""

    #: The primary key (``{}``) as the text RevocationKey.key holds.
    key_text = "CAST({} AS TEXT)"

    def snapshot_keys(
        self, connection: BaseDatabaseWrapper, target: Target, snapshot: str, match: str | None
    ) -> int:
        n = Names.of(connection, target)
        keys, key = keys_table(connection)
        where = f" WHERE {match}" if match else ""
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {keys} (snapshot, seq, {key}) "
                f"SELECT %s, row_number() OVER (ORDER BY t.{n.pk}), "
                f"{self.key_text.format(f't.{n.pk}')} FROM {n.table} t{where}",
                [snapshot],
            )
            return int(cursor.rowcount)
