"""--verify stops on SIGINT and SIGTERM: the statement is cancelled on the server.

The check is held up by an ACCESS EXCLUSIVE lock on the table, taken by the
test: a statement that never ends by itself, and one whose waiting backend
shows in pg_locks. Without the cancel, a killed client's backend keeps waiting
(the server only notices a gone client when it writes to it).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable

import pytest
from django.db import connection, transaction

from rotator.errors import ExitStatus
from tests.conftest import fill, manage, run, subprocess_env
from tests.support import tokens

pytestmark = pytest.mark.django_db(transaction=True)

LOCK = {
    "postgresql": "LOCK TABLE tickets_ticket IN ACCESS EXCLUSIVE MODE",
    "mysql": "LOCK TABLES tickets_ticket WRITE",
}
WAITERS = {
    "postgresql": "SELECT count(*) FROM pg_locks WHERE NOT granted "
    "AND relation = 'tickets_ticket'::regclass",
    "mysql": "SELECT count(*) FROM information_schema.processlist "
    "WHERE state = 'Waiting for table metadata lock'",
}


def _waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute(WAITERS[connection.vendor])
        return int(cursor.fetchone()[0])


def _until(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def signalled(
    child: subprocess.Popen[str], signum: int, ready: Callable[[], bool], what: str
) -> tuple[str, str, float]:
    """Once ``ready()`` (within 60 s; else fail with ``what``), send ``signum`` to ``child``
    and wait for it: (stdout, stderr, seconds it took to exit). A child still running
    afterwards is killed."""
    try:
        assert _until(ready, 60), what
        child.send_signal(signum)
        sent = time.monotonic()
        out, err = child.communicate(timeout=60)
        return out, err, time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()


@pytest.mark.parametrize(
    ("signum", "status"),
    [(signal.SIGINT, ExitStatus.SIGINT), (signal.SIGTERM, ExitStatus.SIGTERM)],
)
def test_verify_stops_on_a_signal_and_cancels_its_query(signum, status):
    if connection.vendor not in LOCK:
        pytest.skip(f"no table lock that holds a reader up on {connection.vendor}")
    fill(500)
    run("regenerate_token_async", "--workers", "2", "-v", "0")
    before = tokens()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(LOCK[connection.vendor])
        child = subprocess.Popen(
            manage("regenerate_token_async", "--verify"),
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err, took = signalled(
            child, signum, lambda: _waiters() == 1, "the check never reached the table"
        )
        # The check's backend stopped waiting: its statement was cancelled, not orphaned.
        assert _until(lambda: _waiters() == 0, 10)
        if connection.vendor == "mysql":
            with connection.cursor() as cursor:
                cursor.execute("UNLOCK TABLES")
    assert child.returncode == int(status), (out, err)
    assert took < 30  # within about a second; generous for a loaded machine
    lines = [line for line in err.splitlines() if line.startswith("CommandError")]
    assert lines == [
        f"CommandError: Interrupted by {signum.name}: --verify of tickets.Ticket.token "
        "stopped; nothing was changed"
    ], err
    assert "Traceback" not in err
    assert out == ""
    assert tokens() == before
