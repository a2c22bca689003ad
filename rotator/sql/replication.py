"""Replication lag for ``--max-replication-lag``: PostgreSQL only, read on the primary.

``pg_stat_replication.replay_lag`` is how far each standby's replay trails
the primary; NULL (no standby, or one that has caught up and is idle) counts
as no lag. A role without ``pg_read_all_stats`` sees NULL for every standby,
which would look like no lag forever, so that is refused up front. The SQL is
the PostgreSQL builder's; every other builder refuses the flag.
"""

from __future__ import annotations

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.sql import builder_for

LAG_SQL = "SELECT max(extract(epoch FROM replay_lag))::float8 FROM pg_stat_replication"
CAN_READ_SQL = (
    "SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') "
    "OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
)


def check_replication_lag(alias: str, limit: float) -> None:
    """Refuse ``--max-replication-lag`` where it cannot be measured."""
    connection = connections[alias]
    builder_for(connection).check_replication_lag(connection, alias, limit)


def replication_lag(connection: BaseDatabaseWrapper) -> float | None:
    """The largest replay lag of the primary's standbys in seconds, or None."""
    if connection.in_atomic_block:
        raise AssertionError("unreachable: the lag check must not run inside a transaction")
    return builder_for(connection).replication_lag(connection)
