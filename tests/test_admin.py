"""The admin lists runs with their progress and pauses, resumes and cancels them."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User

from rotator.models import Run
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


def test_pause_resume_and_cancel_actions(operator):
    fill(200)
    stopped = interrupted_run(workers=1, batch_size=20, committed=1)
    page = act(operator, "pause_runs", stopped.pk).content.decode()
    assert f"Paused run {stopped.pk}." in page
    paused = Run.objects.get(pk=stopped.pk)
    assert paused.state == Run.State.PAUSED
    assert paused.stop_reason == "admin user 'operator'"

    act(operator, "resume_runs", stopped.pk)
    resumed = Run.objects.get(pk=stopped.pk)
    assert (resumed.state, resumed.stop_reason) == (Run.State.ACTIVE, "")

    act(operator, "cancel_runs", stopped.pk)
    assert Run.objects.get(pk=stopped.pk).state == Run.State.ABANDONED
    page = act(operator, "pause_runs", stopped.pk).content.decode()
    assert "1 selected run was not paused" in page


def test_runs_cannot_be_added_or_deleted_here(operator):
    fill(10)
    run("regenerate_token_async")
    finished = Run.objects.get()
    assert operator.get(f"{CHANGELIST}add/").status_code == 403
    assert operator.get(f"{CHANGELIST}{finished.pk}/delete/").status_code == 403
