"""The check that finishes a run stops on SIGINT and SIGTERM, as the workers do: during
the settle wait at once, during its statement by cancelling it on the server. The
line says what is left (every row rotated, the check not done) and the rerun
finishes the run.

The statement is held up by a table lock the test takes once every shard is
done (see tests/test_verify_interrupt.py for the locks).
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from django.db import connection, transaction

from rotator.errors import ExitStatus
from rotator.models import Run, Shard
from tests.conftest import fill, manage, run, subprocess_env
from tests.support import tokens
from tests.test_verify_interrupt import LOCK, _until, _waiters, signalled

pytestmark = pytest.mark.django_db(transaction=True)


def _rotation(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        manage("regenerate_token_async", "--workers", "1", *args),
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _every_shard_done() -> bool:
    shards = Shard.objects.all()
    return shards.exists() and not shards.exclude(state=Shard.State.DONE).exists()


def _settling() -> bool:
    """Every shard done, and a moment for the command to be in its settle wait."""
    if not _every_shard_done():
        return False
    time.sleep(0.5)
    return True


def _interrupted_line(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("CommandError")]


def _said_and_left(err: str, signum: signal.Signals) -> None:
    pk = Run.objects.get().pk
    assert _interrupted_line(err) == [
        f"CommandError: Interrupted by {signum.name}: every row of tickets.Ticket.token is "
        f"rotated, but the check that finishes run {pk} is not done; run the same command "
        "again to finish it"
    ], err
    assert "Traceback" not in err
    assert Run.objects.get().state == Run.State.ACTIVE


@pytest.mark.parametrize(
    ("signum", "status"),
    [(signal.SIGINT, ExitStatus.SIGINT), (signal.SIGTERM, ExitStatus.SIGTERM)],
)
def test_a_signal_during_the_settle_wait_stops_the_run_unfinished_and_says_why(signum, status):
    fill(300)
    before = tokens()
    child = _rotation("--settle", "60")
    _, err, took = signalled(child, signum, _settling, "the run never rotated its rows")
    assert child.returncode == int(status), err
    assert took < 10  # the wait polls every 0.2 s
    _said_and_left(err, signum)
    after = tokens()
    assert all(after[pk] != token for pk, token in before.items())
    run("regenerate_token_async", "--workers", "1", "--settle", "0", "-v", "0")
    assert Run.objects.get().state == Run.State.FINISHED
    assert tokens() == after  # the rerun only checked


def test_a_signal_during_the_final_check_cancels_its_statement():
    if connection.vendor not in LOCK:
        pytest.skip(f"no table lock that holds a reader up on {connection.vendor}")
    fill(300)
    child = _rotation("--settle", "1")
    try:
        assert _until(_every_shard_done, 60), "the run never rotated its rows"
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(LOCK[connection.vendor])
            _, err, took = signalled(
                child, signal.SIGINT, lambda: _waiters() == 1, "the check never reached the table"
            )
            # The check's backend stopped waiting: cancelled, not orphaned.
            assert _until(lambda: _waiters() == 0, 10)
            if connection.vendor == "mysql":
                with connection.cursor() as cursor:
                    cursor.execute("UNLOCK TABLES")
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == int(ExitStatus.SIGINT), err
    assert took < 10  # not HARD_EXIT_AFTER's forced exit either: the line is the service's
    _said_and_left(err, signal.SIGINT)
