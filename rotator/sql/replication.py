"""Replication lag for ``--max-replication-lag``: PostgreSQL only, read on the primary.

``pg_stat_replication.replay_lag`` is how far each standby's replay trails
the primary; NULL (no standby, or one that has caught up and is idle) counts
as no lag. A role without ``pg_read_all_stats`` sees NULL for every standby,
which would look like no lag forever, so that is refused up front.
"""

from __future__ import annotations

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.errors import RotatorError

LAG_SQL = "SELECT max(extract(epoch FROM replay_lag))::float8 FROM pg_stat_replication"
CAN_READ_SQL = (
    "SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') "
    "OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
)


def check_replication_lag(alias: str, limit: float) -> None:
    """Refuse ``--max-replication-lag`` where it cannot be measured."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        raise RotatorError(
            f"--max-replication-lag {limit:g} reads PostgreSQL's pg_stat_replication, but "
            f"database {alias!r} is {connection.display_name}; drop the flag, or pass "
            "--pause-when with a check of your own"
        )
    with connection.cursor() as cursor:
        cursor.execute(CAN_READ_SQL)
        (can_read,) = cursor.fetchone()
    if not can_read:
        user = connection.settings_dict.get("USER") or "the database user"
        raise RotatorError(
            f"--max-replication-lag needs to read pg_stat_replication, which {user!r} may not "
            f"see; run GRANT pg_monitor TO {user} (or drop the flag)"
        )


def replication_lag(connection: BaseDatabaseWrapper) -> float | None:
    """The largest replay lag of the primary's standbys in seconds, or None."""
    if connection.in_atomic_block:
        raise AssertionError("unreachable: the lag check must not run inside a transaction")
    with connection.cursor() as cursor:
        cursor.execute(LAG_SQL)
        (lag,) = cursor.fetchone()
    return lag
