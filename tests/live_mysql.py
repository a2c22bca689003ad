"""The application beside the rotator on MariaDB/MySQL: sessions of its own (MySQLdb
directly, never Django's connections), and who waits on whose row locks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.db import connection

from tests.live import TIMEOUT


def connect(lock_wait_timeout: int | None = None) -> Any:
    """A new autocommit session on the test database."""
    import MySQLdb

    conn = MySQLdb.connect(**connection.get_connection_params())
    conn.autocommit(True)
    if lock_wait_timeout is not None:
        conn.cursor().execute(f"SET SESSION innodb_lock_wait_timeout = {int(lock_wait_timeout)}")
    return conn


def execute(conn: Any, sql: str, params: list[Any] | None = None) -> list[tuple]:
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        return list(cur.fetchall() or [])
    finally:
        cur.close()


def blocked_by(thread_id: int) -> list[int]:
    """Sessions waiting on a row lock that ``thread_id`` holds."""
    conn = connect()
    try:
        found = execute(
            conn,
            "SELECT waiting_pid FROM sys.innodb_lock_waits WHERE blocking_pid = %s",
            [thread_id],
        )
    finally:
        conn.close()
    return [row[0] for row in found]


def wait_until_blocking(thread_id: int, done: Callable[[], bool] = lambda: False) -> bool:
    """Wait until some session waits on ``thread_id``'s row locks (True) or ``done()``."""
    deadline = time.monotonic() + TIMEOUT
    while not blocked_by(thread_id):
        if done():
            return False
        assert time.monotonic() < deadline, f"no session waited on {thread_id} in {TIMEOUT} s"
        # InnoDB refreshes its information_schema lock tables only after 100 ms unread:
        # polled faster, they never change.
        time.sleep(0.2)
    return True
