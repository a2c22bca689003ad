"""Interrupted rotations resume with every row rotated exactly once.

Each test seeds 200,000 tickets, lets the database count every token change
(tests/counting.py), runs ``manage.py regenerate_token_async`` as a child
process, stops it mid-run (kill -9, Ctrl-C, SIGTERM, Ctrl-C twice), checks
that the checkpoints match the counter exactly, and resumes to the end.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db.models import Sum

from rotator.models import Run, Shard
from tests import counting
from tests.conftest import (
    ROOT,
    fill,
    manage,
    rows,
    subprocess_env,
    wait_for_other_transactions_to_end,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROWS = 200_000
COMMAND = manage(
    "regenerate_token_async", "--workers", "4", "--batch-size", "2000", "--progress-interval", "0.5"
)
TIMEOUT = 45  # seconds for any one wait; a whole run takes a few


@dataclass
class Child:
    """One ``manage.py`` process; its output goes to files so it can never block."""

    proc: subprocess.Popen
    stdout: Path
    stderr: Path

    @property
    def out(self) -> str:
        return self.stdout.read_text()

    @property
    def err(self) -> str:
        return self.stderr.read_text()

    def wait(self) -> int:
        return self.proc.wait(TIMEOUT)

    def kill(self, signum: int) -> None:
        self.proc.send_signal(signum)


@pytest.fixture
def tickets() -> Iterator[dict[int, tuple]]:
    """200,000 tickets with a rotation counter; yields them as they were before."""
    fill(ROWS)
    counting.install()
    try:
        yield rows()
    finally:
        counting.uninstall()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    children: list[Child] = []

    def spawn(*args: str) -> Child:
        n = len(children)
        stdout, stderr = tmp_path / f"{n}.out", tmp_path / f"{n}.err"
        with stdout.open("w") as out, stderr.open("w") as err:
            proc = subprocess.Popen(
                COMMAND + list(args),
                cwd=ROOT,
                env=subprocess_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # a Ctrl-C at the terminal is not the test's signal
            )
        children.append(Child(proc, stdout, stderr))
        return children[-1]

    try:
        yield spawn
    finally:
        for child in children:
            if child.proc.poll() is None:
                child.proc.kill()
            child.proc.wait(TIMEOUT)


def rows_done() -> int:
    return Shard.objects.aggregate(n=Sum("rows_done"))["n"] or 0


def wait_for_rows(child: Child, at_least: int) -> int:
    """Poll the checkpoints until ``child`` has committed ``at_least`` rows."""
    deadline = time.monotonic() + TIMEOUT
    while (done := rows_done()) < at_least:
        assert child.proc.poll() is None, (
            f"exited with {child.proc.returncode} after {done:,} rows, before "
            f"{at_least:,}:\n{child.out}{child.err}"
        )
        assert time.monotonic() < deadline, f"{done:,} rows after {TIMEOUT} s\n{child.err}"
        time.sleep(0.005)
    return done


def wait_for_output(child: Child, text: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while text not in child.err:
        assert child.proc.poll() is None, f"exited before printing {text!r}:\n{child.err}"
        assert time.monotonic() < deadline, f"no {text!r} after {TIMEOUT} s\n{child.err}"
        time.sleep(0.001)


def finish(spawn: Callable[..., Child], before: dict[int, tuple]) -> Child:
    """Resume in a new process, let it finish and check the whole table."""
    child = spawn()
    assert child.wait() == 0, child.err
    assert "finished." in child.out
    assert_rotated_exactly_once(before)
    return child


def assert_rotated_exactly_once(before: dict[int, tuple]) -> None:
    after = rows()
    assert counting.histogram() == {1: ROWS}
    assert after.keys() == before.keys()
    assert all(after[pk][0] != before[pk][0] for pk in before)
    assert len({token for token, *_ in after.values()}) == ROWS
    assert all(after[pk][1:] == before[pk][1:] for pk in before)
    tally = counting.tally()
    assert tally.exact
    assert tally.rows_done == ROWS
    assert tally.finished
    assert Run.objects.count() == 1  # every rerun resumed the same run
    assert set(Shard.objects.values_list("state", flat=True)) == {Shard.State.DONE}


def test_kill_9_at_three_points_then_resume(tickets, spawn):
    previous = 0
    orphaned = []
    for n, fraction in enumerate((0.2, 0.5, 0.8)):
        child = spawn()
        # This child must commit something of its own before it dies.
        wait_for_rows(child, max(int(ROWS * fraction), previous + 1))
        child.kill(signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL  # reaped: its pid is gone, its leases orphaned
        wait_for_other_transactions_to_end()

        tally = counting.tally()
        assert tally.exact, tally
        assert previous < tally.rotated < ROWS  # killed mid-run, after progress
        if n:
            resumed = f"Resuming run {Run.objects.get().pk} of tickets.Ticket.token: {previous:,}/"
            assert resumed in child.out
        previous = tally.rotated
        orphaned.append(tally.running)

    assert any(orphaned)  # the resumes took over shards a dead process still held

    last = finish(spawn, tickets)
    assert f"{previous:,}/{ROWS:,} rows already rotated" in last.out
    assert f"Rotated {ROWS - previous:,} rows" in last.out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_at_a_checkpoint_and_the_rerun_finishes(tickets, spawn, signum):
    child = spawn()
    wait_for_rows(child, ROWS // 3)
    child.kill(signum)
    assert child.wait() == 128 + signum

    tally = counting.tally()
    assert tally.exact, tally
    assert 0 < tally.rotated < ROWS
    assert tally.running == 0  # every shard released, none left to a lease timeout
    assert not Shard.objects.exclude(state=Shard.State.DONE).exclude(owner_session="").exists()
    name = signal.Signals(signum).name
    assert f"Interrupted by {name}: {tally.rotated:,}/{ROWS:,} rows" in child.err
    assert f"run `{shlex.join(COMMAND)}` again to resume" in child.err

    finish(spawn, tickets)


def test_a_second_ctrl_c_aborts_in_flight_batches_and_checkpoints_stay_exact(tickets, spawn):
    child = spawn()
    wait_for_rows(child, ROWS // 3)
    child.kill(signal.SIGINT)
    wait_for_output(child, "Stopping")
    child.kill(signal.SIGINT)
    assert child.wait() == 130
    assert "Aborting: in-flight batches roll back." in child.err

    tally = counting.tally()
    assert tally.exact, tally
    assert 0 < tally.rotated < ROWS
    assert tally.running == 0
    assert f"Interrupted by SIGINT: {tally.rotated:,}/{ROWS:,} rows" in child.err

    finish(spawn, tickets)
