"""Rotations enqueued on Celery: real brokers, real ``celery worker`` processes.

200,000 tickets, the database counting every token change (tests/counting.py),
``regenerate_token_async --enqueue --workers 4`` and two worker processes of two
pool children each: a child killed with -9 mid-run costs only its batch in
flight (every row is rotated exactly once), and pause and resume work as they do
for the command. Once on Redis and once on RabbitMQ.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from rotator.models import Run, Shard
from tests import counting
from tests.celery_workers import BROKERS, TIMEOUT, Fleet, fleet, reachable
from tests.conftest import fill, run
from tests.environment import need

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROWS = 200_000
ENQUEUE = (
    "regenerate_token_async",
    "--enqueue",
    "--workers",
    "4",
    "--batch-size",
    "1000",
    "--generator",
    "tests.celery_workers.slow_uuid",
)


@pytest.fixture(params=sorted(BROKERS))
def workers(request, own_tmp: Path, counted: None) -> Iterator[Fleet]:
    if find_spec("celery") is None:
        need("celery", "needs the celery extra: pip install -e '.[celery]'")
    url = BROKERS[request.param]
    why = reachable(url)
    if why is not None:
        need("celery", f"needs the {request.param} broker at {url} ({why}); see .ci/run")
    fill(ROWS)
    with fleet(url, own_tmp) as running:
        running.start(2, concurrency=2)
        yield running


def wait_for(condition: Callable[[], Any], what: str, fleet: Fleet) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{fleet.log()[-4000:]}"
        time.sleep(0.1)


def status() -> str:
    out, _ = run("regenerate_token_async", "--status")
    return out


def holders(text: str) -> set[int]:
    """The pids --status says hold shards, alive."""
    return {int(pid) for pid in re.findall(r"held by \S+ pid (\d+): .*, alive", text)}


def test_a_worker_killed_mid_run_costs_only_its_batch(workers: Fleet):
    enqueued = workers.manage(*ENQUEUE)
    assert enqueued.returncode == 0, enqueued.stderr
    planned = Run.objects.get()
    assert enqueued.stdout.splitlines()[-1] == (
        f"Enqueued 4 worker tasks on celery for run {planned.pk} of tickets.Ticket.token. "
        "Follow it with: python manage.py regenerate_token_async --status"
    )
    children = workers.children()
    before = wait_for(
        lambda: (lambda text: text if len(holders(text)) == 4 else None)(status()),
        "four tasks holding shards",
        workers,
    )
    assert holders(before) <= children  # the tasks run in the workers' pool processes
    victim = min(holders(before))
    wait_for(lambda: Run.objects.get().rows_done() > ROWS // 10, "a tenth of the rows", workers)
    # A process of a worker this test started (a pool child), found through its shard.
    assert victim in workers.children()
    killed_at = Run.objects.get().rows_done()
    os.kill(victim, signal.SIGKILL)

    def changed() -> str | None:
        text = status()
        return text if victim not in holders(text) and holders(text) else None

    after = wait_for(changed, "the holders to change", workers)
    assert re.search(r"Run \d+ of tickets.Ticket.token: running", after)
    wait_for(lambda: Run.objects.get().state == Run.State.FINISHED, "the run to finish", workers)
    assert killed_at < ROWS
    tally = counting.tally()
    assert (tally.rotated, tally.twice, tally.misplaced, tally.running) == (ROWS, 0, 0, 0)
    assert tally.exact and tally.finished
    assert counting.histogram() == {1: ROWS}
    # The lost task was delivered again, or its shard taken over by another task.
    log = workers.log()
    assert "WorkerLostError" in log or "took over" in log or "Worker exited prematurely" in log
    assert Shard.objects.exclude(state=Shard.State.DONE).count() == 0


def test_pause_and_resume_an_enqueued_run(workers: Fleet, own_tmp: Path):
    out, err = own_tmp / "wait.out", own_tmp / "wait.err"
    waiting = workers.popen(*ENQUEUE, "--wait", "--progress-interval", "0.5", out=out, err=err)
    try:
        wait_for(lambda: Run.objects.filter(pk__gt=0).exists(), "the run", workers)
        wait_for(lambda: Run.objects.get().rows_done() > ROWS // 10, "a tenth of the rows", workers)
        paused = workers.manage("regenerate_token_async", "--pause")
        assert paused.returncode == 0, paused.stderr
        assert waiting.wait(TIMEOUT) == 3, err.read_text()
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert re.search(
        r"Paused by an operator \(--pause from \S+ pid \d+\): [\d,]+/200,000 rows of "
        r"tickets.Ticket.token rotated; resume with --enqueue",
        err.read_text(),
    )
    # Every task ends: no shard stays running, and no row moves any more.
    wait_for(
        lambda: not Shard.objects.filter(state=Shard.State.RUNNING).exists(),
        "the tasks to end",
        workers,
    )
    done = Run.objects.get().rows_done()
    time.sleep(2)
    assert Run.objects.get().rows_done() == done < ROWS
    assert counting.tally().exact

    resumed = workers.manage(*ENQUEUE, "--wait")
    assert resumed.returncode == 0, resumed.stderr
    lines, pk = resumed.stdout.splitlines(), Run.objects.get().pk
    assert lines[0].startswith(f"Resuming paused run {pk} of tickets.Ticket.token: ")
    assert lines[-1] == f"Run {pk} finished: 200,000/200,000 rows of tickets.Ticket.token rotated."
    tally = counting.tally()
    assert tally.exact and tally.finished and tally.rotated == ROWS
    assert counting.histogram() == {1: ROWS}
