"""Transient database faults are survived: the batch rolls back, is retried, the run goes on.

Each fault is injected for real: a worker's backend terminated mid-batch, a
deadlock with an application transaction, a row lock held longer than the
lock timeout, and a restart of a PostgreSQL server that the test starts
itself (never a shared one). Afterwards the database's own counter
(tests/counting.py) must show every row rotated exactly once.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from django.db import connections

from rotator.store.claims import Lease
from tests import counting
from tests.conftest import ROOT, fill, manage
from tests.live import (
    TABLE,
    TIMEOUT,
    Background,
    ScratchServer,
    backend_pid,
    connect,
    deadlocks,
    keys,
    scratch_server,
    terminate,
    wait_until_blocking,
)
from tests.support import rotate_directly
from tickets.models import Ticket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgresql]


def test_a_terminated_worker_backend_costs_one_batch_and_the_run_finishes(counted):
    fill(6_000)
    lock = threading.Lock()
    batches, victims = 0, []

    def terminate_mine_at_batch_5(lease: Lease) -> None:
        # Inside the batch's transaction, after its UPDATE: the worker's own
        # backend is killed from another session, so the commit finds it gone.
        nonlocal batches
        with lock:
            batches += 1
            if batches != 5:
                return
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (pid,) = cursor.fetchone()
        assert terminate(pid)
        victims.append(pid)

    report, out, err = rotate_directly(
        workers=2, batch_size=250, verbosity=1, batch_hook=terminate_mine_at_batch_5
    )
    assert victims
    assert report.finished, out + err
    assert counting.histogram() == {1: 6_000}
    tally = counting.tally()
    assert tally.exact and tally.rows_done == 6_000, tally


def test_an_application_transaction_that_used_to_deadlock_with_a_batch_does_not(counted):
    fill(2_000)
    ids = keys()
    before = deadlocks()
    holding = threading.Event()

    def app() -> str:
        # The app locks the 1,500th row; the second batch (rows 1,001-2,000)
        # meets it; then the app asks for the rows before it. A batch used to
        # wait on the row with those rows locked: a deadlock, the batch its
        # victim. Now the batch rotates the rows before the held one without
        # waiting and commits, and waits for the held row holding no other.
        conn = connect(deadlock_timeout="10s")
        try:
            conn.execute("BEGIN")
            conn.execute(f"UPDATE {TABLE} SET subject = 'app' WHERE id = %s", [ids[1499]])
            holding.set()
            wait_until_blocking(backend_pid(conn))
            conn.execute(
                f"UPDATE {TABLE} SET subject = 'app' WHERE id >= %s AND id < %s",
                [ids[1000], ids[1499]],
            )
            conn.execute("COMMIT")
            return "app committed"
        except psycopg.errors.DeadlockDetected:
            conn.execute("ROLLBACK")
            return "app was the deadlock victim"
        finally:
            conn.close()

    thread = Background(app)
    thread.start()
    assert holding.wait(TIMEOUT)
    try:
        report, out, err = rotate_directly(
            workers=1, shards=1, batch_size=1_000, lock_timeout=5.0, verbosity=1
        )
    finally:
        thread.join()

    assert thread.result == "app committed"
    assert deadlocks() == before
    assert report.finished, out + err
    assert counting.histogram() == {1: 2_000}
    assert set(
        Ticket.objects.filter(pk__gte=ids[1000], pk__lte=ids[1499]).values_list(
            "subject", flat=True
        )
    ) == {"app"}


HOLD = 2.0  # seconds the application keeps its row lock: four lock timeouts


def test_a_lock_held_past_the_lock_timeout_neither_stops_the_run_nor_stalls_the_app(counted):
    fill(2_000)
    ids = keys()
    holding, blocked = threading.Event(), threading.Event()

    def holder() -> None:
        with connect() as conn, conn.transaction():
            conn.execute(f"SELECT id FROM {TABLE} WHERE id = %s FOR UPDATE", [ids[1499]])
            holding.set()
            wait_until_blocking(backend_pid(conn))
            blocked.set()
            time.sleep(HOLD)

    def prober() -> tuple[list[float], int]:
        # Single-row updates of the other rows of the blocked batch's window, as
        # the application makes all the time. A statement that waits longer than
        # 1.5 s on a lock fails: the blocked batch is keeping its whole window locked.
        waits, failures = [], 0
        assert blocked.wait(TIMEOUT)
        deadline = time.monotonic() + HOLD - 0.5
        with connect(lock_timeout="1.5s") as conn:
            n = 0
            while time.monotonic() < deadline:
                pk = ids[1000 + (n * 37) % 499]
                n += 1
                started = time.monotonic()
                try:
                    conn.execute(f"UPDATE {TABLE} SET subject = 'probe' WHERE id = %s", [pk])
                except psycopg.errors.LockNotAvailable:
                    failures += 1
                waits.append(time.monotonic() - started)
                time.sleep(0.05)
        return waits, failures

    threads = [Background(holder), Background(prober)]
    for thread in threads:
        thread.start()
    assert holding.wait(TIMEOUT)
    try:
        report, out, err = rotate_directly(
            workers=1, shards=1, batch_size=1_000, lock_timeout=0.5, verbosity=1
        )
    finally:
        for thread in threads:
            thread.join()

    waits, failures = threads[1].result
    assert waits
    assert failures == 0, f"{failures} of {len(waits)} app updates waited over 1.5 s on the rotator"
    assert report.finished, out + err
    assert counting.histogram() == {1: 2_000}


def test_while_blocked_the_progress_lines_name_the_lock_holder(counted):
    fill(2_000)
    ids = keys()
    holding = threading.Event()
    holder_pid: list[int] = []

    def holder() -> None:
        with connect() as conn, conn.transaction():
            conn.execute(f"SELECT id FROM {TABLE} WHERE id = %s FOR UPDATE", [ids[1499]])
            holder_pid.append(backend_pid(conn))
            holding.set()
            wait_until_blocking(backend_pid(conn))
            time.sleep(4.0)  # the watcher asks after 1 s, once a second

    thread = Background(holder)
    thread.start()
    assert holding.wait(TIMEOUT)
    try:
        report, out, err = rotate_directly(
            workers=1,
            shards=1,
            batch_size=1_000,
            lock_timeout=30.0,
            progress_interval=0.2,
            verbosity=1,
        )
    finally:
        thread.join()

    assert report.finished, out + err
    assert f"pid {holder_pid[0]}" in err, f"no line names the lock holder:\n{err}"


@dataclass
class Scratch:
    """100,000 counted tickets on a server of the test's own, and a rotation child to start."""

    server: ScratchServer
    env: dict[str, str]
    out: Path
    err: Path
    rows: int = 100_000
    child: subprocess.Popen | None = None

    def start(self, *args: str) -> subprocess.Popen:
        command = manage("regenerate_token_async", "--workers", "4", "--batch-size", "1000")
        with self.out.open("w") as stdout, self.err.open("w") as stderr:
            self.child = subprocess.Popen(
                [*command, "--progress-interval", "0.5", *args],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        return self.child

    @property
    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def rows_done(self) -> int:
        with self.server.connect() as conn:
            return conn.execute("SELECT coalesce(sum(rows_done), 0) FROM rotator_shard").fetchone()[
                0
            ]

    def wait_for_rows(self, at_least: int) -> None:
        deadline = time.monotonic() + TIMEOUT
        while (done := self.rows_done()) < at_least:
            assert self.child is not None and self.child.poll() is None, self.output
            assert time.monotonic() < deadline, f"{done:,} rows after {TIMEOUT} s"
            time.sleep(0.02)
        assert done < self.rows, "the run ended before the fault; use more rows"

    def histogram(self) -> dict[int, int]:
        with self.server.connect() as conn:
            found = conn.execute(
                f"SELECT {counting.COLUMN}, count(*) FROM {TABLE} GROUP BY 1"
            ).fetchall()
        return dict(found)


def _env(server: ScratchServer) -> dict[str, str]:
    env = dict(os.environ, DATABASE_URL=server.url(), PYTHONUNBUFFERED="1")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


@pytest.fixture(scope="module")
def scratch_template() -> Iterator[Path]:
    """A stopped cluster, migrated, with Scratch.rows counted tickets; each test copies it."""
    with scratch_server() as server:
        for args in (("migrate",), ("seed_tickets", "--count", str(Scratch.rows))):
            subprocess.run(
                manage(*args, "-v", "0"),
                cwd=ROOT,
                env=_env(server),
                check=True,
                capture_output=True,
            )
        with server.connect() as conn:
            for sql in counting._INSTALL["postgresql"]:
                conn.execute(sql)
        server.stop()
        yield server.pgdata


@pytest.fixture
def scratch(scratch_template: Path, tmp_path: Path) -> Iterator[Scratch]:
    with scratch_server(scratch_template) as server:
        setup = Scratch(server, _env(server), tmp_path / "out", tmp_path / "err")
        try:
            yield setup
        finally:
            if setup.child is not None and setup.child.poll() is None:
                setup.child.kill()
                setup.child.wait()


@pytest.mark.slow
def test_a_server_restart_mid_run_is_waited_out_by_the_same_invocation(scratch):
    child = scratch.start("--reconnect-timeout", "30")
    scratch.wait_for_rows(scratch.rows // 5)

    scratch.server.stop("fast")
    time.sleep(3)
    scratch.server.start()

    returncode = child.wait(60)
    counts = scratch.histogram()
    assert returncode == 0, f"{scratch.output}\nrotations per row: {counts}"
    assert "finished." in scratch.out.read_text()
    assert counts == {1: scratch.rows}


@pytest.mark.slow
def test_a_server_that_stays_down_ends_the_run_with_one_line_and_a_resume_hint(scratch):
    child = scratch.start("--reconnect-timeout", "3")
    scratch.wait_for_rows(scratch.rows // 5)

    scratch.server.stop("fast")
    started = time.monotonic()
    returncode = child.wait(30)
    waited = time.monotonic() - started

    assert returncode not in (0, None), scratch.output
    assert waited >= 3, f"gave up after {waited:.1f} s, before --reconnect-timeout 3"
    err = scratch.err.read_text()
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert "regenerate_token_async" in last and "resume" in last, last
