"""--status shows every run without changing anything; --dry-run shows a finished run."""

from __future__ import annotations

import json
import re

import pytest

from rotator.models import Run, Shard
from tests.conftest import fill, rows, run
from tests.support import Stop, fail_from_batch, interrupted_run, rotate_directly

pytestmark = pytest.mark.django_db(transaction=True)


def snapshot() -> tuple:
    return (
        rows(),
        list(Run.objects.order_by("pk").values()),
        list(Shard.objects.order_by("pk").values()),
    )


def test_status_lists_every_run_newest_first_and_changes_nothing():
    fill(1_000)
    run("regenerate_token_async", "--workers", "2")
    with pytest.raises(Stop):
        rotate_directly(
            restart=True, workers=1, batch_size=100, verbosity=0, batch_hook=fail_from_batch(3)
        )
    stopped = Run.objects.get(state=Run.State.ACTIVE)
    before = snapshot()
    out, _ = run("regenerate_token_async", "--status")
    assert snapshot() == before
    lines = out.splitlines()
    first = Run.objects.order_by("pk").first()
    assert lines[0] == f"Run {stopped.pk} of tickets.Ticket.token: stopped"
    assert lines[1] == "  rows: 200/1,000 rotated (20.0%)"
    assert re.fullmatch(
        r"  rate: [\d,]+ rows/s \(average while running\); time remaining: -", lines[2]
    )
    assert f"Run {first.pk} of tickets.Ticket.token: finished" in lines
    assert "  rows: 1,000/1,000 rotated (100.0%)" in lines


def test_status_json_is_one_object_with_shards():
    fill(500)
    stopped = interrupted_run(workers=2, batch_size=50, committed=2)
    out, _ = run("regenerate_token_async", "--status", "--json")
    data = json.loads(out)
    assert data["target"] == "tickets.Ticket.token"
    (only,) = data["runs"]
    assert only["id"] == stopped.pk
    assert only["state"] == "stopped"
    assert only["rows_done"] == stopped.rows_done() > 0
    assert only["rows_planned"] == 500
    assert len(only["shards"]) == 8
    assert sum(s["rows_done"] for s in only["shards"]) == only["rows_done"]
    assert only["holders"] == []  # the interrupted workers handed their shards back


def test_status_per_shard_at_verbosity_2():
    fill(100)
    run("regenerate_token_async", "--workers", "1")
    out, _ = run("regenerate_token_async", "--status", "-v", "2")
    shard_lines = [line for line in out.splitlines() if line.startswith("    shard ")]
    assert len(shard_lines) == 4
    assert re.match(
        r"    shard 0: keys \(start, \d+\], done, 25/25 rows, \S+ pid \d+ worker 0", shard_lines[0]
    )


def test_a_paused_run_shows_its_reason():
    fill(100)
    interrupted_run(workers=1, batch_size=10, committed=1)
    run("regenerate_token_async", "--pause")
    out, _ = run("regenerate_token_async", "--status")
    assert out.splitlines()[0].endswith(": paused")
    assert re.fullmatch(r"  reason: --pause from \S+ pid \d+", out.splitlines()[1])


def test_status_without_runs():
    out, _ = run("regenerate_token_async", "--status")
    assert out == "tickets.Ticket.token has no runs on database 'default'.\n"


def test_dry_run_after_a_finished_run_shows_it_and_succeeds():
    fill(200)
    run("regenerate_token_async")
    finished = Run.objects.get()
    before = snapshot()
    out, _ = run("regenerate_token_async", "--dry-run")
    assert snapshot() == before
    lines = out.splitlines()
    assert lines[0] == "Dry run: nothing will be changed."
    assert lines[1].startswith(f"tickets.Ticket.token was fully rotated by run {finished.pk} (")
    assert lines[1].endswith(
        "running the command would do nothing (pass --restart to rotate every row again)."
    )
    assert lines[2] == f"Run {finished.pk} of tickets.Ticket.token: finished"


def test_json_needs_status():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match=r"^--json goes with --status"):
        call_command("regenerate_token_async", "--json")
