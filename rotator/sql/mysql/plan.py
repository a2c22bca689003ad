"""The MariaDB/MySQL plan: one count, then one walk of the key index from boundary to boundary."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.errors import RotatorError
from rotator.sql.base import Split, positions, sizes_of
from rotator.sql.mysql.liveness import lock_name
from rotator.sql.names import Names
from rotator.target import Target

PLAN_LOCK_SECONDS = 600


def plan_lock(connection: BaseDatabaseWrapper, target: Target) -> None:
    """Make a second planner of the same table wait for the first (a named lock)."""
    # Named locks are not transactional: released once the plan commits (or
    # with the session, if planning fails).
    name = lock_name(connection, f"plan:{target.model._meta.db_table}")
    with connection.cursor() as cur:
        cur.execute("SELECT GET_LOCK(%s, %s)", [name, PLAN_LOCK_SECONDS])
        if cur.fetchone()[0] != 1:
            raise RotatorError(
                f"another rotator has been planning {target.label} for "
                f"{PLAN_LOCK_SECONDS} s; wait for it, then run the command again"
            )

    def release() -> None:
        with connection.cursor() as cur:
            cur.execute("SELECT RELEASE_LOCK(%s)", [name])

    transaction.on_commit(release, using=target.alias)


def split(
    connection: BaseDatabaseWrapper, target: Target, shards: int, key: Callable[[str], Any]
) -> Split:
    """Cut the key space into at most ``shards`` ranges; ``key`` makes a key parameter."""
    n = Names.of(connection, target)
    with contextlib.closing(connection.connection.cursor()) as cur:
        cur.execute(f"SELECT CAST({n.pk} AS CHAR) FROM {n.table} ORDER BY {n.pk} DESC LIMIT 1")
        row = cur.fetchone()
        if row is None:
            return Split(None, 0, [], [])
        high = row[0]
        cur.execute(f"SELECT COUNT(*) FROM {n.table} WHERE {n.pk} <= %s", [key(high)])
        ends = positions(cur.fetchone()[0], shards)
        uppers: list[str] = []
        for size in sizes_of(ends)[:-1]:
            lower = f"{n.pk} > %s AND " if uppers else ""
            params = [key(uppers[-1])] if uppers else []
            cur.execute(
                f"SELECT CAST({n.pk} AS CHAR) FROM {n.table} WHERE {lower}{n.pk} <= %s "
                f"ORDER BY {n.pk} LIMIT 1 OFFSET %s",
                [*params, key(high), size - 1],
            )
            found = cur.fetchone()
            if found is None or found[0] == high:  # rows deleted while planning
                break
            uppers.append(found[0])
    uppers.append(high)
    return Split(high, ends[-1], uppers, sizes_of(positions(ends[-1], len(uppers))))
