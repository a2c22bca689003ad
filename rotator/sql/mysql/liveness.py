"""Liveness on MariaDB/MySQL: a ``GET_LOCK()`` named lock per shard, held by the worker's
session; like PostgreSQL's advisory locks, it dies with the session. It only proves an
owner dead sooner: a frozen owner keeps its session (and lock) but loses its shards when
its lease on the database clock expires (rotator/store/claims.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.sql.mysql.batch import digest
from rotator.sql.mysql.errors import MySQLdb


def lock_name(connection: BaseDatabaseWrapper, what: str) -> str:
    # Named locks are server-wide: the database's name keeps two databases apart.
    return f"rotator:{digest(connection.settings_dict['NAME'] + ':' + what)}"


def shard_lock(connection: BaseDatabaseWrapper, sql: str, shard_id: int) -> Any:
    """Run ``sql`` (one %s: the lock's name) on shard_id's lock; return its one value."""
    name = lock_name(connection, f"shard:{shard_id}")
    with (
        connection.wrap_database_errors,
        contextlib.closing(connection.connection.cursor()) as cur,
    ):
        cur.execute(sql, [name])
        return cur.fetchone()[0]


def release_all(connection: BaseDatabaseWrapper) -> None:
    with (
        connection.wrap_database_errors,
        contextlib.closing(connection.connection.cursor()) as cur,
    ):
        cur.execute("SELECT RELEASE_ALL_LOCKS()")


def blockers(connection: BaseDatabaseWrapper, backends: list[int]) -> dict[int, list[int]]:
    """For each of ``backends`` waiting on a row lock, the sessions that hold it."""
    marks = ", ".join(["%s"] * len(backends))
    found: dict[int, list[int]] = {}
    try:
        with contextlib.closing(connection.connection.cursor()) as cur:
            cur.execute(
                "SELECT waiting_pid, blocking_pid FROM sys.innodb_lock_waits "
                f"WHERE waiting_pid IN ({marks})",
                backends,
            )
            for waiting, blocking in cur.fetchall():
                found.setdefault(int(waiting), []).append(int(blocking))
    except MySQLdb.MySQLError:  # no sys schema (or no right to read it)
        return {}
    return found


def interrupt(connection: BaseDatabaseWrapper) -> None:
    """KILL QUERY from a second connection: the statement fails, its transaction rolls
    back, the worker's session stays usable."""
    raw = connection.connection
    if raw is None:
        return
    params = {**connection.get_connection_params(), "connect_timeout": 2}
    killer = MySQLdb.connect(**params)
    try:
        killer.cursor().execute(f"KILL QUERY {int(raw.thread_id())}")
    finally:
        killer.close()


def interrupter(connection: BaseDatabaseWrapper) -> Callable[[], None]:
    """``interrupt`` for another thread, the session's id read now: mysqlclient refuses
    ``thread_id()`` on a connection another thread is using."""
    connection.ensure_connection()
    session = int(connection.connection.thread_id())
    params = {**connection.get_connection_params(), "connect_timeout": 2}

    def kill() -> None:
        killer = MySQLdb.connect(**params)
        try:
            killer.cursor().execute(f"KILL QUERY {session}")
        finally:
            killer.close()

    return kill
