# ruff: noqa: F811 - the fixtures of tests/test_resume.py, imported by name
"""kill -9 during a large batch, then an immediate rerun: the dead process's backend still
runs its statement and holds its shard's lock, so the rerun waits for it (saying how far
the run is) instead of exiting 0 over unrotated rows; it exits 0 only once every row is
rotated, each exactly once."""

from __future__ import annotations

import signal
import time

import pytest

from rotator.models import Shard
from tests import counting
from tests.test_resume import (  # noqa: F401 - fixtures
    ROWS,
    assert_rotated_exactly_once,
    spawn,
    tickets,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

#: One batch per shard: 4 shards of 50,000 rows, each one long statement.
BIG = ("--shards", "4", "--batch-size", "50000")


def test_kill_9_during_a_large_batch_then_an_immediate_rerun_exits_0_only_when_done(tickets, spawn):
    child = spawn(*BIG)
    deadline = time.monotonic() + 45
    # Every worker is inside its first (and only) batch once all four shards are owned.
    while Shard.objects.filter(state=Shard.State.RUNNING).count() < 4:
        assert child.proc.poll() is None, child.err
        assert time.monotonic() < deadline, child.err
        time.sleep(0.005)
    child.kill(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    rerun = spawn(*BIG)
    # It waits for the dead process's statements, then rotates all 200,000 rows itself.
    assert rerun.proc.wait(300) == 0, rerun.out + rerun.err
    assert "finished" in rerun.out
    assert_rotated_exactly_once(tickets)
    assert counting.histogram() == {1: ROWS}
