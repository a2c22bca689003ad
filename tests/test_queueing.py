"""--enqueue and the task seam (rotator.service.queueing), without a broker: tasks run
in this process through Django Tasks' ImmediateBackend, or are called directly.
The real brokers and workers are in test_celery.py."""

from __future__ import annotations

import pytest
from django.core.management import CommandError

from rotator.models import Run
from rotator.service import queueing
from tests.conftest import fill, run
from tests.support import interrupted_run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def immediate_tasks(settings):
    settings.ROTATOR_TASK_BACKEND = "django_tasks"
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}


def test_enqueue_wait_runs_the_tasks_and_reports_the_end(immediate_tasks):
    fill(500)
    out, _ = run("regenerate_token_async", "--enqueue", "--wait", "--workers", "2")
    finished = Run.objects.get()
    count = queueing.task_count("default", 2)
    tasks = f"{count} worker task{'s' if count != 1 else ''}"
    assert (
        f"Enqueued {tasks} on django_tasks for run {finished.pk} of tickets.Ticket.token. " in out
    )
    assert out.splitlines()[-1] == (
        f"Run {finished.pk} finished: 500/500 rows of tickets.Ticket.token rotated."
    )
    assert (finished.state, finished.rows_done()) == (Run.State.FINISHED, 500)


def test_a_task_for_a_run_that_is_not_active_does_nothing(immediate_tasks):
    fill(200)
    stopped = interrupted_run(workers=1, batch_size=20, committed=1)
    Run.objects.filter(pk=stopped.pk).update(state=Run.State.PAUSED, stop_reason="by a test")
    outcome = queueing.work_run(stopped.pk, "default")
    assert outcome == queueing.Outcome(stopped.pk, "paused", 0, 0.0, "by a test")
    assert Run.objects.get().rows_done() == 20
    assert queueing.work_run(10_000, "default").state == "gone"


def test_a_duplicate_delivery_after_the_end_changes_nothing():
    fill(200)
    stopped = interrupted_run(workers=1, batch_size=20, committed=1)
    first = queueing.work_run(stopped.pk, "default", {"batch_size": 50})
    assert (first.state, first.rows) == ("finished", 180)
    again = queueing.work_run(stopped.pk, "default", {"batch_size": 50})
    assert (again.state, again.rows) == ("finished", 0)
    assert Run.objects.get().rows_done() == 200


def test_a_resumed_enqueue_picks_up_a_paused_run(immediate_tasks):
    fill(300)
    stopped = interrupted_run(workers=1, batch_size=20, committed=2)
    Run.objects.filter(pk=stopped.pk).update(state=Run.State.PAUSED)
    out, _ = run("regenerate_token_async", "--enqueue", "--workers", "1")
    assert out.splitlines()[0] == (
        f"Resuming paused run {stopped.pk} of tickets.Ticket.token: 40/300 rows already rotated."
    )
    assert Run.objects.get().state == Run.State.FINISHED


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--wait"], "--wait goes with --enqueue; add --enqueue or drop --wait"),
        (["--status", "--enqueue"], "--status cannot be combined with --enqueue"),
        (["--enqueue", "--dry-run"], "--enqueue cannot be combined with --dry-run"),
    ],
)
def test_enqueue_flags_that_do_not_go_together(argv, message):
    fill(10)
    with pytest.raises(CommandError, match=message):
        run("regenerate_token_async", *argv)
    assert not Run.objects.exists()


def test_a_bad_backend_setting_is_one_line_and_changes_nothing(settings):
    settings.ROTATOR_TASK_BACKEND = "rq"
    fill(10)
    with pytest.raises(
        CommandError,
        match=r"settings.ROTATOR_TASK_BACKEND is 'rq'; expected one of celery, django_tasks$",
    ):
        run("regenerate_token_async", "--enqueue")
    assert not Run.objects.exists()


def test_task_options_carry_only_what_paces_batches():
    from rotator.service.options import Options

    carried = queueing.task_options(Options(workers=9, batch_size=300, max_rate=50.0))
    assert carried == {
        "batch_size": 300,
        "batch_seconds": None,
        "lock_timeout": 2.0,
        "reconnect_timeout": 60.0,
        "fill_nulls": False,
        "max_rate": 50.0,
        "pause_when": None,
        "max_replication_lag": None,
    }
