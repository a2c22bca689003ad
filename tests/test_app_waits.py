"""The application waits at most one batch, even while it holds a row lock itself.

A batch that met a row the application holds used to wait out its lock
timeout with every other row of its window locked, so unrelated application
updates of those rows waited as long. Now a batch waits for a held row only
before it holds any other (and steps around one it meets later), so the
application's other updates wait at most one batch. On PostgreSQL and on
MariaDB/MySQL alike; each vendor's sessions are its own driver's, never
Django's connections.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction

from rotator.sql.base import Window
from rotator.workers.sizing import TARGET_SECONDS
from tests import counting, live, live_mysql
from tests.conftest import fill
from tests.live import TABLE, TIMEOUT, Background, keys
from tests.support import rotate_directly, token_target
from tickets.models import Ticket

pytestmark = [pytest.mark.django_db(transaction=True)]

ROWS = 6_000
BATCH = 1_000
#: The row the application holds: the middle of the third window.
HELD = 2_500
#: How long the application keeps holding it once the rotator waits on it
#: (longer than the 2 s lock timeout: the batch rolls back and tries again).
HOLD = 2.5


class Postgres:
    fault = "a row lock was held longer than the lock timeout; batch rolled back"

    @staticmethod
    def hold(pk: int, held: threading.Event, over: threading.Event) -> bool:
        with live.connect() as conn, conn.transaction():
            conn.execute(f"SELECT 1 FROM {TABLE} WHERE id = %s FOR UPDATE", [pk])
            held.set()
            blocked = live.wait_until_blocking(live.backend_pid(conn), done=over.is_set)
            time.sleep(HOLD if blocked else 0)
        return blocked

    @staticmethod
    def updater() -> tuple[Callable[[int], None], Callable[[], None]]:
        conn = live.connect(lock_timeout="10s")
        sql = f"UPDATE {TABLE} SET subject = subject WHERE id = %s"
        return (lambda pk: conn.execute(sql, [pk]) and None), conn.close


class MariaDB:
    fault = "a row lock was held longer than innodb_lock_wait_timeout; batch rolled back"

    @staticmethod
    def hold(pk: int, held: threading.Event, over: threading.Event) -> bool:
        conn = live_mysql.connect()
        try:
            live_mysql.execute(conn, "BEGIN")
            live_mysql.execute(conn, f"SELECT 1 FROM {TABLE} WHERE id = %s FOR UPDATE", [pk])
            held.set()
            blocked = live_mysql.wait_until_blocking(conn.thread_id(), done=over.is_set)
            time.sleep(HOLD if blocked else 0)
            conn.commit()
        finally:
            conn.close()
        return blocked

    @staticmethod
    def updater() -> tuple[Callable[[int], None], Callable[[], None]]:
        conn = live_mysql.connect(lock_wait_timeout=10)
        # A real change: MariaDB does not lock a row an UPDATE leaves as it was.
        sql = f"UPDATE {TABLE} SET subject = CONCAT('app ', id, ' ', RAND()) WHERE id = %s"
        return (lambda pk: live_mysql.execute(conn, sql, [pk]) and None), conn.close


def _unrelated_updates_wait_at_most_one_batch(app: Any) -> None:
    fill(ROWS)
    ids = keys()
    # Rows of the held row's window, on both sides of it.
    neighbours = ids[HELD - 400 : HELD] + ids[HELD + 1 : HELD + 400]
    held, over = threading.Event(), threading.Event()
    waits: list[float] = []

    def update_neighbours() -> None:
        update, close = app.updater()
        try:
            i = 0
            while not over.is_set():
                started = time.monotonic()
                update(neighbours[i % len(neighbours)])
                waits.append(time.monotonic() - started)
                i += 7
                time.sleep(0.005)
        finally:
            close()

    holder = Background(lambda: app.hold(ids[HELD], held, over))
    updater = Background(update_neighbours)
    holder.start()
    assert held.wait(TIMEOUT)
    updater.start()
    try:
        report, out, err = rotate_directly(workers=1, shards=1, batch_size=BATCH, verbosity=2)
    finally:
        over.set()
        updater.join()
        holder.join()

    assert report.finished, out + err
    assert holder.result, "the rotator never waited on the row the application held"
    assert len(waits) > 100
    worst = max(waits)
    assert worst <= TARGET_SECONDS + 0.2, f"an unrelated update waited {worst:.2f} s"
    # Every row once, the held one too (after the application let it go).
    assert counting.histogram() == {1: ROWS}
    assert app.fault in out + err, out + err


@pytest.mark.postgresql
def test_unrelated_updates_wait_at_most_one_batch_while_the_app_holds_a_row(counted):
    _unrelated_updates_wait_at_most_one_batch(Postgres)


@pytest.mark.mysql
def test_on_mariadb_unrelated_updates_wait_at_most_one_batch_while_the_app_holds_a_row(counted):
    _unrelated_updates_wait_at_most_one_batch(MariaDB)


def _tokens() -> dict[int, Any]:
    return dict(Ticket.objects.values_list("pk", "token"))


def _prepared() -> tuple[Any, Any]:
    from rotator.sql.mysql import MySQLBuilder

    builder, target = MySQLBuilder(), token_target()
    connection.ensure_connection()  # builders work on open connections (the engine's)
    builder.prepare_session(connection, target, "test")
    builder.guard_transaction(connection, lock_timeout=1, idle_timeout=30)
    return builder, target


@pytest.mark.mysql
def test_on_mariadb_a_window_ends_before_the_first_row_the_application_holds():
    fill(20)
    ids, before = keys(), _tokens()
    builder, target = _prepared()
    app = live_mysql.connect()
    try:
        live_mysql.execute(app, "BEGIN")
        live_mysql.execute(app, f"SELECT 1 FROM {TABLE} WHERE id = %s FOR UPDATE", [ids[12]])
        started = time.monotonic()
        with transaction.atomic():
            outcome = builder.rotate(
                connection, target, Window(str(ids[2]), str(ids[-1]), 15), None, False
            )
        # No lock wait: the held row was the window's thirteenth, not its first.
        assert time.monotonic() - started < 0.9
        app.commit()
    finally:
        app.close()
    assert outcome.held == str(ids[12])
    assert (outcome.seen, outcome.last, outcome.rotated) == (9, str(ids[11]), 9)
    after = _tokens()
    changed = [pk for pk in ids if after[pk] != before[pk]]
    assert changed == ids[3:12]


@pytest.mark.mysql
def test_on_mariadb_a_batch_waits_on_the_first_row_alone_and_names_its_holder():
    fill(10)
    ids, before = keys(), _tokens()
    builder, target = _prepared()
    app = live_mysql.connect()
    waiting: dict[str, Any] = {}

    def batch() -> Any:
        second = connection.copy()
        second.ensure_connection()
        try:
            builder.prepare_session(second, target, "test")
            builder.guard_transaction(second, lock_timeout=10, idle_timeout=30)
            waiting["id"] = builder.backend_id(second)
            second.set_autocommit(False)  # the batch's transaction, as the worker's atomic()
            outcome = builder.rotate(second, target, Window(None, str(ids[-1]), 10), None, False)
            second.commit()
            return outcome
        finally:
            second.close()

    try:
        live_mysql.execute(app, "BEGIN")
        live_mysql.execute(app, f"SELECT 1 FROM {TABLE} WHERE id = %s FOR UPDATE", [ids[0]])
        worker = Background(batch)
        worker.start()
        if not live_mysql.wait_until_blocking(app.thread_id(), done=lambda: not worker.is_alive()):
            worker.join()  # its error, if any
            raise AssertionError("the batch never waited on the row the application held")
        # The batch waits holding no row: the application updates the others at once.
        other = live_mysql.connect(lock_wait_timeout=1)
        try:
            sql = f"UPDATE {TABLE} SET subject = 'app' WHERE id IN (%s, %s)"
            live_mysql.execute(other, sql, [ids[1], ids[9]])
        finally:
            other.close()
        assert builder.blockers(connection, [waiting["id"]]) == {waiting["id"]: [app.thread_id()]}
        # The application's own new value for the row it holds is the application's.
        mine = uuid.uuid4()
        sql = f"UPDATE {TABLE} SET token = %s WHERE id = %s"
        live_mysql.execute(app, sql, [str(mine), ids[0]])
        app.commit()
        worker.join()
    finally:
        app.close()
    assert worker.result.held is None
    assert (worker.result.rotated, worker.result.missed) == (9, [str(ids[0])])
    after = _tokens()
    assert after[ids[0]] == mine
    assert all(after[pk] != before[pk] for pk in ids[1:])
