"""A run stopped from elsewhere: paused, cancelled, or abandoned by a --restart.

The engine reads the run's state in every batch transaction, so a state set
by an operator (``--pause``, ``--cancel``, the admin) or by another process's
``--restart`` stops every worker within one batch, and nothing already
committed is undone.
"""

from __future__ import annotations

import re
import threading

import pytest
from django.db import connection, transaction

from rotator.errors import ExitStatus, Interrupted, RotatorError
from rotator.models import Run, Shard
from rotator.store.claims import Lease
from tests.conftest import fill
from tests.support import rotate_directly, tokens

pytestmark = pytest.mark.django_db(transaction=True)


def set_state_after(batches: int, state: str, reason: str):
    """A batch hook that sets the run's state from another connection after ``batches``."""
    lock = threading.Lock()
    seen = 0

    def hook(lease: Lease) -> None:
        nonlocal seen
        with lock:
            seen += 1
            if seen != batches:
                return

        # As an operator's terminal would: its own connection, its own transaction,
        # landing while the batch that saw the request is still open.
        def operator() -> None:
            try:
                Run.objects.update(state=state, stop_reason=reason)
            finally:
                connection.close()

        threads.append(threading.Thread(target=operator))
        threads[-1].start()

    threads: list[threading.Thread] = []
    hook.threads = threads  # type: ignore[attr-defined]
    return hook


def test_a_paused_run_stops_within_a_batch_and_resumes_where_it_stopped():
    fill(1_000)
    before = tokens()
    pause = set_state_after(3, "paused", "by ops")
    with pytest.raises(Interrupted) as paused:
        rotate_directly(workers=2, batch_size=50, verbosity=0, batch_hook=pause)
    for thread in pause.threads:
        thread.join()
    assert paused.value.returncode == ExitStatus.PAUSED
    message = str(paused.value)
    assert message.startswith("Paused by an operator (by ops): ")
    assert "again to resume run" in message
    middle = tokens()
    changed = {pk for pk in before if middle[pk] != before[pk]}
    run = Run.objects.get()
    assert run.state == Run.State.PAUSED
    # Batches already past their check commit; every worker stops at its next batch.
    # On SQLite the operator's write waits for the one writer's lock, which SQLite's
    # busy handler grants to whoever polls first: the workers may commit a few more
    # batches before it lands (seen: 7), but the run stops short of the end.
    bound = 3 * 50 + 2 * 50 if connection.vendor != "sqlite" else 1_000 - 50
    assert len(changed) == run.rows_done() <= bound
    assert not Shard.objects.filter(state=Shard.State.RUNNING).exists()

    report, out, _ = rotate_directly(workers=3, batch_size=50)
    assert out.startswith(f"Resuming paused run {run.pk} of tickets.Ticket.token: ")
    assert report.finished
    after = tokens()
    assert all(after[pk] != before[pk] for pk in before)
    assert {pk: after[pk] for pk in changed} == {pk: middle[pk] for pk in changed}


def test_a_cancelled_run_stops_and_keeps_what_it_did():
    fill(600)
    cancel = set_state_after(2, "abandoned", "cancelled by ops")
    with pytest.raises(Interrupted) as cancelled:
        rotate_directly(workers=2, batch_size=50, verbosity=0, batch_hook=cancel)
    for thread in cancel.threads:
        thread.join()
    assert cancelled.value.returncode == ExitStatus.CANCELLED
    run = Run.objects.get()
    assert str(cancelled.value).startswith(
        f"Run {run.pk} was abandoned (cancelled by ops); its workers stopped: "
    )
    assert run.state == Run.State.ABANDONED
    assert 0 < run.rows_done() < 600


def test_a_plain_rerun_after_cancel_says_so_and_needs_restart():
    fill(600)
    cancel = set_state_after(2, "abandoned", "cancelled: --cancel from ops pid 1")
    with pytest.raises(Interrupted):
        rotate_directly(workers=2, batch_size=50, verbosity=0, batch_hook=cancel)
    for thread in cancel.threads:
        thread.join()
    run = Run.objects.get()
    middle = tokens()
    with pytest.raises(RotatorError) as refused:
        rotate_directly(workers=2, batch_size=50, verbosity=0)
    assert str(refused.value) == (
        f"run {run.pk} of tickets.Ticket.token was cancelled (cancelled: --cancel from ops "
        f"pid 1) with {run.rows_done():,}/600 rows rotated; pass --restart to rotate every "
        "row again"
    )
    assert Run.objects.count() == 1  # no new run planned
    assert tokens() == middle  # nothing rotated twice


def test_a_run_finished_by_another_process_is_finished_for_this_one_too():
    fill(400)
    finish = set_state_after(2, "finished", "")
    report, out, _ = rotate_directly(workers=2, batch_size=50, verbosity=1, batch_hook=finish)
    for thread in finish.threads:
        thread.join()
    assert report.finished and report.finished_elsewhere
    assert re.search(r"run \d+ finished \(by another process\)\.$", out, re.M)


def test_the_engine_refuses_to_run_inside_a_transaction():
    fill(10)
    before = tokens()
    with pytest.raises(RotatorError, match=r"inside transaction\.atomic\(\)"), transaction.atomic():
        rotate_directly(workers=1)
    assert tokens() == before
    assert not Run.objects.exists()
