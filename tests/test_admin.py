"""The admin lists runs with their progress; users with rotator.control_run pause,
resume (it enqueues), cancel (after a confirmation page) and start them."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission, User

from rotator.models import Run
from rotator.service import queueing
from tests.conftest import fill, run
from tests.support import interrupted_run

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "/admin/rotator/run/"


@pytest.fixture
def operator(client):
    User.objects.create_superuser("operator", "op@example.com", "pw-for-tests")
    client.login(username="operator", password="pw-for-tests")
    return client


def test_the_run_list_shows_target_state_progress_and_rows(operator):
    fill(400)
    run("regenerate_token_async")
    page = operator.get(CHANGELIST).content.decode()
    assert "tickets.Ticket.token" in page
    assert re.search(r'class="rotator-progress" data-percent="100.0"', page)
    assert "400/400" in page
    assert "finished" in page
    for column in ("rate", "time remaining", "started at", "finished at"):
        assert column in page.lower()


def test_a_run_page_shows_its_shards_read_only(operator):
    fill(100)
    run("regenerate_token_async", "--workers", "1")
    finished = Run.objects.get()
    page = operator.get(f"{CHANGELIST}{finished.pk}/change/").content.decode()
    assert "Shards" in page
    assert page.count('<td class="field-rows_planned">') == 4
    assert "<input" not in re.sub(r'<input type="hidden"[^>]*>', "", page.split("Shards")[1])


def act(client, action: str, run_id: int):
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [str(run_id)], "index": "0"},
        follow=True,
    )


@pytest.fixture
def immediate_tasks(settings):
    """Enqueued tasks run at once, in this process (Django Tasks' ImmediateBackend)."""
    settings.ROTATOR_TASK_BACKEND = "django_tasks"
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}


def confirm_cancel(client, run_id: int):
    """The second POST of a cancel: the confirmation page's form."""
    return client.post(
        CHANGELIST,
        {"action": "cancel_runs", "_selected_action": [str(run_id)], "post": "yes"},
        follow=True,
    )


def test_pause_resume_and_cancel_actions(operator, immediate_tasks):
    fill(200)
    stopped = interrupted_run(workers=1, batch_size=20, committed=1)
    page = act(operator, "pause_runs", stopped.pk).content.decode()
    assert f"Paused run {stopped.pk}." in page
    paused = Run.objects.get(pk=stopped.pk)
    assert paused.state == Run.State.PAUSED
    assert paused.stop_reason == "admin user 'operator'"

    page = act(operator, "resume_runs", stopped.pk).content.decode()
    # Resume enqueues worker tasks (here they run at once): the run is rotated to the end.
    assert (
        f"Resumed run {stopped.pk}: enqueued 1 worker task on django_tasks. "
        "Its progress shows here." in page
    )
    resumed = Run.objects.get(pk=stopped.pk)
    assert (resumed.state, resumed.stop_reason, resumed.rows_done()) == (
        Run.State.FINISHED,
        "",
        200,
    )
    page = act(operator, "resume_runs", stopped.pk).content.decode()
    assert f"Run {stopped.pk} was not resumed: it is finished" in page


def test_cancel_asks_first_on_a_page_of_its_own(operator):
    fill(200)
    stopped = interrupted_run(workers=1, batch_size=20, committed=1)
    page = act(operator, "cancel_runs", stopped.pk).content.decode()
    assert "Cancel these runs?" in page
    assert re.search(rf"Run {stopped.pk} of tickets.Ticket.token \(active, 20/200 rows", page)
    assert 'value="Yes, cancel these runs"' in page
    assert Run.objects.get(pk=stopped.pk).state == Run.State.ACTIVE  # asking changed nothing

    page = confirm_cancel(operator, stopped.pk).content.decode()
    assert f"Cancelled run {stopped.pk}." in page
    cancelled = Run.objects.get(pk=stopped.pk)
    assert (cancelled.state, cancelled.stop_reason) == (
        Run.State.ABANDONED,
        "cancelled: admin user 'operator'",
    )
    page = act(operator, "pause_runs", stopped.pk).content.decode()
    assert "1 selected run was not paused" in page


def staff(client, name: str, *codenames: str):
    user = User.objects.create_user(name, f"{name}@example.com", "pw-for-tests", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client.login(username=name, password="pw-for-tests")
    return client


def test_a_view_only_user_sees_runs_and_can_do_nothing_to_them(client, immediate_tasks):
    fill(200)
    stopped = interrupted_run(workers=1, batch_size=20, committed=1)
    viewer = staff(client, "viewer", "view_run")
    page = viewer.get(CHANGELIST).content.decode()
    assert f'value="{stopped.pk}"' not in page  # no checkbox: no action
    assert 'name="action"' not in page
    assert "Start a rotation" not in page
    assert "20/200" in page
    for action in ("pause_runs", "resume_runs", "cancel_runs"):
        # With no action allowed the changelist ignores the POST: the list again.
        page = act(viewer, action, stopped.pk).content.decode()
        assert "<title>Select run to view" in page
        assert "Paused run" not in page and "Resumed run" not in page
        confirm_cancel(viewer, stopped.pk)
    after = Run.objects.get(pk=stopped.pk)
    assert (after.state, after.stop_reason, after.rows_done()) == (Run.State.ACTIVE, "", 20)
    assert viewer.get(f"{CHANGELIST}start/").status_code == 403
    assert viewer.post(f"{CHANGELIST}start/", {"target": "tickets.Ticket.token"}).status_code == (
        403
    )
    assert Run.objects.count() == 1


def test_staff_without_any_run_permission_gets_403(client):
    fill(10)
    nobody = staff(client, "nobody")
    assert nobody.get(CHANGELIST).status_code == 403
    assert nobody.get(f"{CHANGELIST}start/").status_code == 403


def test_control_permission_is_what_acts_not_superuser(client):
    fill(200)
    stopped = interrupted_run(workers=1, batch_size=20, committed=1)
    controller = staff(client, "controller", "view_run", "control_run")
    page = controller.get(CHANGELIST).content.decode()
    assert '<option value="pause_runs">' in page
    assert "Start a rotation" in page
    act(controller, "pause_runs", stopped.pk)
    assert Run.objects.get(pk=stopped.pk).stop_reason == "admin user 'controller'"


def test_actions_keep_csrf_and_origin_checks(immediate_tasks):
    from django.test import Client

    fill(200)
    stopped = interrupted_run(workers=1, batch_size=20, committed=1)
    client = staff(Client(enforce_csrf_checks=True), "controller", "view_run", "control_run")
    client.get(CHANGELIST)
    token = client.cookies["csrftoken"].value
    form = {"action": "pause_runs", "_selected_action": [str(stopped.pk)], "index": "0"}
    assert client.post(CHANGELIST, form).status_code == 403  # no token
    forged = {**form, "csrfmiddlewaretoken": token}
    assert client.post(CHANGELIST, forged, HTTP_ORIGIN="http://evil.example").status_code == 403
    assert Run.objects.get(pk=stopped.pk).state == Run.State.ACTIVE
    assert client.post(CHANGELIST, forged).status_code == 302
    assert Run.objects.get(pk=stopped.pk).state == Run.State.PAUSED


def test_start_a_rotation_of_a_registered_target(operator, immediate_tasks):
    fill(300)
    page = operator.get(f"{CHANGELIST}start/").content.decode()
    assert '<option value="tickets.Ticket.token">' in page
    page = operator.post(
        f"{CHANGELIST}start/",
        {"target": "tickets.Ticket.token", "database": "default", "workers": "2"},
        follow=True,
    ).content.decode()
    started = Run.objects.get()
    tasks = "2 worker tasks" if queueing.task_count("default", 2) == 2 else "1 worker task"
    assert f"Run {started.pk} of tickets.Ticket.token: enqueued {tasks} on django_tasks." in page
    assert (started.state, started.rows_done(), started.shards.count()) == (
        Run.State.FINISHED,
        300,
        8,
    )
    # A finished field is rotated again only when asked to.
    page = operator.post(
        f"{CHANGELIST}start/",
        {"target": "tickets.Ticket.token", "database": "default", "workers": "2"},
    ).content.decode()
    assert f"was fully rotated by run {started.pk}" in page
    assert "pass --restart to rotate every row again" in page
    assert Run.objects.count() == 1


def test_an_errored_run_shows_its_error(operator):
    fill(100)
    stopped = interrupted_run(workers=1, batch_size=20, committed=1)
    Run.objects.filter(pk=stopped.pk).update(
        state=Run.State.ERRORED, error_class="RotatorError", error_message="disk full"
    )
    page = operator.get(CHANGELIST).content.decode()
    assert "errored<br><small>RotatorError: disk full</small>" in page
    page = operator.get(f"{CHANGELIST}{stopped.pk}/change/").content.decode()
    assert re.search(r"RotatorError: disk full", page)


def test_runs_cannot_be_added_or_deleted_here(operator):
    fill(10)
    run("regenerate_token_async")
    finished = Run.objects.get()
    assert operator.get(f"{CHANGELIST}add/").status_code == 403
    assert operator.get(f"{CHANGELIST}{finished.pk}/delete/").status_code == 403
