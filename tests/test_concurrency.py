"""Workers really run at the same time, each in its own transaction on its own connection.

Proved without timing: a ``threading.Barrier`` waited on inside a batch
transaction only opens when that many transactions are open at once (one
connection at a time would time out and break it), and the database itself
names the connections.
"""

from __future__ import annotations

import re
import threading

import pytest
from django.db import connection, connections

from rotator.models import Run
from rotator.store.claims import Lease
from tests.conftest import fill, rows, run
from tests.support import rotate_directly, tokens

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 20


class Rendezvous:
    """A batch hook: the first batch of every worker meets the others before committing."""

    def __init__(self, workers: int) -> None:
        self.meet = threading.Barrier(workers, timeout=TIMEOUT)
        self.leave = threading.Barrier(workers, timeout=TIMEOUT)
        self.lock = threading.Lock()
        self.local = threading.local()
        self.threads: set[int] = set()
        self.backends: set[int] = set()
        self.open_transactions: list[int] = []
        self.shards: set[int] = set()

    def __call__(self, lease: Lease) -> None:
        if getattr(self.local, "met", False):
            return
        self.local.met = True
        worker_connection = connections["default"]
        assert worker_connection.in_atomic_block
        with worker_connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (pid,) = cursor.fetchone()
        with self.lock:
            self.threads.add(threading.get_ident())
            self.backends.add(pid)
            self.shards.add(lease.index)
        self.meet.wait()
        # Every worker is now inside its uncommitted batch: ask the server how
        # many transactions of this database hold a transaction id right now.
        with worker_connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND backend_xid IS NOT NULL"
            )
            (open_now,) = cursor.fetchone()
        with self.lock:
            self.open_transactions.append(open_now)
        self.leave.wait()


@pytest.mark.postgresql
@pytest.mark.parametrize("workers", [2, 8])
def test_workers_hold_open_transactions_at_once_on_distinct_connections(workers):
    fill(workers * 100)
    before = rows()
    meeting = Rendezvous(workers)
    report, out, err = rotate_directly(
        workers=workers, shards=workers, batch_size=30, batch_hook=meeting, verbosity=2
    )
    assert not meeting.meet.broken and not meeting.leave.broken
    assert len(meeting.threads) == workers
    assert len(meeting.backends) == workers
    assert connection.connection.info.backend_pid not in meeting.backends
    assert meeting.shards == set(range(workers))
    assert meeting.open_transactions == [workers] * workers
    # The workers' own report names the same connections.
    named = {int(pid) for pid in re.findall(r"on postgresql:pid=(\d+)", err)}
    assert named == meeting.backends
    assert report.finished and report.rows == workers * 100
    after = rows()
    assert all(after[pk][0] != before[pk][0] for pk in before)


@pytest.mark.postgresql
def test_one_connection_at_a_time_would_break_the_barrier():
    """The barrier is a real test: with one worker it cannot open for two."""
    fill(100)
    before = tokens()
    meeting = Rendezvous(2)
    meeting.meet = threading.Barrier(2, timeout=0.5)
    with pytest.raises(threading.BrokenBarrierError):
        rotate_directly(workers=1, shards=2, batch_size=30, batch_hook=meeting)
    assert tokens() == before  # the batch that waited rolled back


@pytest.mark.sqlite
def test_sqlite_says_once_that_it_has_a_single_writer_and_runs_one_worker():
    fill(1_000)
    before = rows()
    threads: set[int] = set()
    report, out, err = rotate_directly(
        workers=4, batch_size=50, batch_hook=lambda lease: threads.add(threading.get_ident())
    )
    lines = out.splitlines()
    assert [line for line in lines if "writer" in line] == [
        "SQLite has a single writer: running the 4 workers' shards one at a time."
    ]
    assert lines[-1].endswith(f"with 1 worker; run {report.run_id} finished.")
    assert len(threads) == 1
    assert Run.objects.get().shards.count() == 16  # planned for 4 workers all the same
    after = rows()
    assert all(after[pk][0] != before[pk][0] for pk in before)


@pytest.mark.sqlite
def test_sqlite_single_writer_through_the_command():
    fill(300)
    out, err = run("regenerate_token_async", "--workers", "8", "-v", "2")
    assert out.count("single writer") == 1
    assert "with 1 worker;" in out
    assert set(re.findall(r"worker (\d+):", err)) == {"0"}
