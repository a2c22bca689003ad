"""Checks of the database made before anything changes: migrations, connection pool size,
and room on the server for the rotator's connections, with headroom for the application.

The application's connections come first: a rotation must never be why the
application gets "too many clients". Before a run starts, the server's limit
(max_connections less the slots reserved for superusers) and its current use
are read; the connections the run will open (one per worker, one for the
progress watcher, one for the pause checks) must fit in what is free while
``headroom()`` connections stay free for the application. Otherwise the run
is refused in one line that says how many workers would fit. A worker that
reconnects (after a restart, say) checks again and gives its connection back
while the headroom is taken, waiting as for an unreachable server.
"""

from __future__ import annotations

import math

from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.executor import MigrationExecutor

from rotator.errors import RotatorError
from rotator.sql import builder_for
from rotator.sql.base import ConnectionUse

#: Connections always left free for the application, at least ...
HEADROOM_MIN = 5
#: ... and at least this share of the server's limit.
HEADROOM_SHARE = 0.10
#: Connections a run opens besides its workers' (the progress watcher, the pause checks).
EXTRA_CONNECTIONS = 2


def headroom(limit: int) -> int:
    """Connections left free for the application on a server that takes ``limit``."""
    return max(HEADROOM_MIN, math.ceil(limit * HEADROOM_SHARE))


class NoRoom(DatabaseError):
    """A reconnecting worker found the application's headroom taken (waited out as a fault)."""


def check_database(alias: str, workers: int) -> None:
    connection = connections[alias]
    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in pending[:3])
        more = f" and {len(pending) - 3} more" if len(pending) > 3 else ""
        raise RotatorError(
            f"database {alias!r} has unapplied migrations ({names}{more}); "
            f"run: python manage.py migrate --database {alias}"
        )
    pool = connection.settings_dict.get("OPTIONS", {}).get("pool")
    if pool:
        size = pool.get("max_size") or pool.get("min_size", 4) if isinstance(pool, dict) else 4
        # One per worker, one for the command, one for the lock-wait watcher.
        if workers + 2 > size:
            raise RotatorError(
                f"--workers {workers} needs {workers + 2} connections but the pool of database "
                f"{alias!r} holds at most {size}; lower --workers or raise "
                "OPTIONS['pool']['max_size']"
            )


def _described(use: ConnectionUse) -> str:
    return (
        f"{use.free} of its {use.limit} connections are free (max_connections {use.maximum}, "
        f"{use.reserved} reserved, {use.in_use} in use)"
    )


def check_connection_room(alias: str, workers: int) -> None:
    """Refuse a run whose connections would eat into the application's headroom."""
    connection = connections[alias]
    use = builder_for(connection).connection_use(connection)
    if use is None:
        return
    needed = workers + EXTRA_CONNECTIONS
    keep = headroom(use.limit)
    if needed <= use.free - keep:
        return
    fits = use.free - keep - EXTRA_CONNECTIONS
    advice = (
        f"lower --workers to {fits} or fewer"
        if fits >= 1
        else "wait until the application uses fewer connections, or raise max_connections"
    )
    raise RotatorError(
        f"--workers {workers} needs {needed} more connections to database {alias!r}, but "
        f"{_described(use)} and {keep} stay free for the application; {advice}"
    )


def check_reconnect_room(connection: BaseDatabaseWrapper) -> None:
    """On a worker's new connection: give it back (NoRoom) if the headroom is taken."""
    use = builder_for(connection).connection_use(connection)
    if use is None or use.free >= headroom(use.limit):
        return
    connection.close()
    raise NoRoom(
        f"the server is nearly full ({_described(use)}, {headroom(use.limit)} kept for the "
        "application)"
    )
