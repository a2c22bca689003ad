"""The benchmark's own database: create it, describe the server, drop it."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connections

from . import vendors
from .bootstrap import ADMIN, DEFAULT_NAME, BenchError, bench_name

NAME = DEFAULT_NAME
MIN_VERSION = 130000  # gen_random_uuid() is built in from PostgreSQL 13
SHOWN = ("shared_buffers", "max_wal_size", "synchronous_commit", "full_page_writes")


@dataclass(frozen=True)
class Server:
    version: str
    where: str
    settings: dict[str, str]


def create(name: str | None = None) -> None:
    """Create ``name`` (default ``bench_name()``) afresh; refuse when another session uses it."""
    name = name or bench_name()
    if vendors.vendor() != "postgresql":
        return vendors.create(name)
    qn = connections[ADMIN].ops.quote_name
    with connections[ADMIN].cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version_num')::int")
        (version,) = cursor.fetchone()
        if version < MIN_VERSION:
            raise BenchError(f"the benchmark needs PostgreSQL 13 or later, got {version!r}")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        (busy,) = cursor.fetchone()
        if busy:
            raise BenchError(
                f"database {name!r} has {busy} open connection(s), probably another benchmark "
                f"run; wait for it to finish or drop it with DROP DATABASE {name} WITH (FORCE)"
            )
        # A leftover of a run that was killed before it could clean up.
        cursor.execute(f"DROP DATABASE IF EXISTS {qn(name)}")
        cursor.execute(f"CREATE DATABASE {qn(name)}")


def drop(name: str | None = None) -> None:
    name = name or bench_name()
    if vendors.vendor() != "postgresql":
        return vendors.drop(name)
    default = connections["default"]
    default.close()
    if hasattr(default, "close_pool"):
        default.close_pool()
    qn = connections[ADMIN].ops.quote_name
    with connections[ADMIN].cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {qn(name)} WITH (FORCE)")
    connections[ADMIN].close()


def describe() -> Server:
    connection = connections["default"]
    if connection.vendor != "postgresql":
        return Server(*vendors.describe())
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        (version,) = cursor.fetchone()
        values = {}
        for setting in SHOWN:
            cursor.execute(f"SHOW {setting}")
            (values[setting],) = cursor.fetchone()
    if connection.settings_dict["ENGINE"] == "asyncproj.embedded":
        where = "embedded (pgserver)"
    else:
        params = connection.get_connection_params()
        where = f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"
    return Server(version=f"PostgreSQL {version.split()[0]}", where=where, settings=values)


def other_writes() -> dict[int, int]:
    """Rows written so far in each other database of the server, by oid (to flag shared WAL)."""
    if vendors.vendor() != "postgresql":
        return {}  # WAL is measured on PostgreSQL only
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT datid::bigint, (tup_inserted + tup_updated + tup_deleted)::bigint "
            "FROM pg_stat_database WHERE datid <> 0 AND datname <> current_database()"
        )
        return dict(cursor.fetchall())


def activity_between(before: dict[int, int], after: dict[int, int]) -> tuple[int, int]:
    """Rows other databases wrote, and databases created or dropped, between two readings."""
    rows = sum(max(0, n - before.get(oid, 0)) for oid, n in after.items())
    return rows, len(before.keys() ^ after.keys())
