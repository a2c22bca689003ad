"""Pause and cancel a 4-worker run from a second process, as an operator at another terminal.

Needs the engine to read the run's state in every batch (exit 3 when paused,
4 when cancelled). Uses the 200,000-row fixtures of test_resume.
"""

from __future__ import annotations

import re
import signal
import subprocess

import pytest

from rotator.models import Run, Shard
from tests import counting, test_resume
from tests.conftest import ROOT, manage, subprocess_env
from tests.test_resume import ROWS, TIMEOUT, finish, rows_done, wait_for_rows

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# The fixtures of test_resume: 200,000 counted tickets, and manage.py children.
tickets = test_resume.tickets
spawn = test_resume.spawn
WORKERS, BATCH = 4, 2000  # the spawned command's --workers and --batch-size
#: The spawned run is held to this pace (20 s for the table), so that the operator's
#: command, a Django start-up of its own, always acts while it runs, however loaded
#: the machine. Batches stay BATCH rows (--max-rate cuts only above half a second's).
PACE = ("--max-rate", "10000")


def operator(*args: str) -> subprocess.CompletedProcess:
    """``manage.py regenerate_token_async ARGS`` in another process, as from another terminal."""
    return subprocess.run(
        manage("regenerate_token_async", *args),
        cwd=ROOT,
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_pause_from_another_terminal_stops_every_worker_within_a_batch(tickets, spawn):
    child = spawn(*PACE)
    wait_for_rows(child, ROWS // 4)
    paused = operator("--pause")
    assert paused.returncode == 0, paused.stderr
    at_pause = rows_done()
    assert child.wait() == 3
    stopped_at = rows_done()
    assert at_pause <= stopped_at <= at_pause + WORKERS * BATCH  # one batch per worker at most
    assert stopped_at < ROWS
    assert re.search(
        rf"^CommandError: Paused by an operator \(--pause from \S+ pid \d+\): "
        rf"{stopped_at:,}/{ROWS:,} rows of tickets\.Ticket\.token rotated; run "
        r"`[^`]*manage\.py regenerate_token_async[^`]*` again to resume run \d+$",
        child.err,
        re.M,
    ), child.err
    tally = counting.tally()
    assert tally.exact, tally
    assert tally.running == 0  # every worker handed its shard back
    run = Run.objects.get()
    assert run.state == Run.State.PAUSED

    last = finish(spawn, tickets)  # running the command again resumes it
    assert Run.objects.get().state == Run.State.FINISHED
    assert f"{stopped_at:,}/{ROWS:,} rows already rotated" in last.out


def test_cancel_from_another_terminal_stops_the_run_and_undoes_nothing(tickets, spawn):
    child = spawn(*PACE)
    wait_for_rows(child, ROWS // 4)
    cancelled = operator("--cancel", "--yes")
    assert cancelled.returncode == 0, cancelled.stderr
    at_cancel = rows_done()
    assert child.wait() == 4
    stopped_at = rows_done()
    run = Run.objects.get()
    assert re.search(
        rf"^CommandError: Run {run.pk} was abandoned \(cancelled: --cancel from \S+ pid \d+\); "
        rf"its workers stopped: {stopped_at:,}/{ROWS:,} rows of tickets\.Ticket\.token rotated$",
        child.err,
        re.M,
    ), child.err
    assert at_cancel <= stopped_at <= at_cancel + WORKERS * BATCH
    tally = counting.tally()
    assert tally.exact, tally
    assert counting.histogram() == {0: ROWS - stopped_at, 1: stopped_at}  # nothing undone
    assert Run.objects.get().state == Run.State.ABANDONED
    assert not Shard.objects.filter(state=Shard.State.RUNNING).exists()


def test_status_from_another_terminal_shows_the_live_workers(tickets, spawn):
    child = spawn(*PACE)
    wait_for_rows(child, ROWS // 5)
    shown = operator("--status", "-v", "2")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    run = Run.objects.get()
    assert lines[0] == f"Run {run.pk} of tickets.Ticket.token: running"
    held = [line for line in lines if line.startswith("  held by ")]
    assert len(held) == 1
    assert re.fullmatch(
        rf"  held by \S+ pid {child.proc.pid}: workers? [0-3](, [0-3])* on [1-4] shards?, "
        r"last heartbeat \d+:\d\d ago, alive",
        held[0],
    )
    assert re.fullmatch(
        r"  rate: [\d,]+ rows/s \(average while running\); time remaining: \d+:\d\d", lines[2]
    )
    running = [line for line in lines if line.startswith("    shard ") and ", running," in line]
    assert running and all(line.endswith(", alive") for line in running)
    child.kill(signal.SIGINT)  # it may have finished meanwhile
    child.wait()
