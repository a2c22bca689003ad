"""--pause, --cancel, --purge, and --restart's confirmation of an unfinished run."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from rotator.command import actions
from rotator.models import Run, Shard
from tests.conftest import fill, rows, run
from tests.support import Stop, fail_from_batch, fingerprints_of, interrupted_run, rotate_directly

pytestmark = pytest.mark.django_db(transaction=True)


def refused(*args: str) -> str:
    with pytest.raises(CommandError) as exc:
        call_command("regenerate_token_async", *args, stdout=StringIO())
    return str(exc.value)


def test_pause_sets_the_state_and_says_how_to_resume():
    fill(200)
    stopped = interrupted_run(workers=1, batch_size=20, committed=1)
    out, _ = run("regenerate_token_async", "--pause")
    assert out == (
        f"Paused run {stopped.pk} of tickets.Ticket.token: its workers stop after their current "
        "batch (exit status 3). Resume with: python manage.py regenerate_token_async\n"
    )
    paused = Run.objects.get(pk=stopped.pk)
    assert paused.state == Run.State.PAUSED
    assert re.fullmatch(r"--pause from \S+ pid \d+", paused.stop_reason)
    assert refused("--pause") == (
        f"run {stopped.pk} of tickets.Ticket.token is already paused; run the command to resume it"
    )


def test_pause_without_an_unfinished_run():
    fill(20)
    run("regenerate_token_async")
    finished = Run.objects.get()
    assert refused("--pause") == (
        "tickets.Ticket.token has no unfinished run to pause (its last run, "
        f"{finished.pk}, is finished); see them all with --status"
    )


def test_cancel_needs_yes_when_not_on_a_terminal():
    fill(200)
    stopped = interrupted_run(workers=1, batch_size=20, committed=1)
    assert refused("--cancel") == (
        f"--cancel abandons run {stopped.pk} of tickets.Ticket.token (20/200 rows rotated; they "
        "stay rotated); pass --yes to confirm --cancel when not on a terminal"
    )
    assert Run.objects.get(pk=stopped.pk).state == Run.State.ACTIVE
    before = rows()
    out, _ = run("regenerate_token_async", "--cancel", "--yes")
    assert out.startswith(f"Cancelled run {stopped.pk} of tickets.Ticket.token")
    cancelled = Run.objects.get(pk=stopped.pk)
    assert cancelled.state == Run.State.ABANDONED
    assert re.fullmatch(r"cancelled: --cancel from \S+ pid \d+", cancelled.stop_reason)
    assert rows() == before  # nothing undone


def test_cancel_on_a_terminal_asks(monkeypatch):
    fill(100)
    stopped = interrupted_run(workers=1, batch_size=20, committed=1)
    monkeypatch.setattr(actions, "stdin_is_tty", lambda: True)
    asked: list[str] = []
    monkeypatch.setattr(actions, "ask", lambda prompt: asked.append(prompt) or "no")
    assert refused("--cancel") == "--cancel not confirmed; nothing was changed"
    assert asked[0].endswith("Type 'yes' to go on: ")
    assert Run.objects.get(pk=stopped.pk).state == Run.State.ACTIVE
    monkeypatch.setattr(actions, "ask", lambda prompt: "yes")
    run("regenerate_token_async", "--cancel")
    assert Run.objects.get(pk=stopped.pk).state == Run.State.ABANDONED


def test_restart_of_an_unfinished_run_needs_yes_when_not_on_a_terminal():
    fill(300)
    stopped = interrupted_run(workers=1, batch_size=30, committed=2)
    before = rows()
    assert refused("--restart") == (
        f"--restart abandons run {stopped.pk} of tickets.Ticket.token (active, 60/300 rows "
        "rotated) and rotates every row again; pass --yes to confirm --restart when not on a "
        "terminal"
    )
    assert rows() == before
    assert Run.objects.get(pk=stopped.pk).state == Run.State.ACTIVE
    run("regenerate_token_async", "--restart", "--yes")
    assert Run.objects.get(pk=stopped.pk).state == Run.State.ABANDONED


def test_restart_of_a_finished_run_asks_nothing():
    fill(30)
    run("regenerate_token_async")
    run("regenerate_token_async", "--restart")
    assert Run.objects.filter(state=Run.State.FINISHED).count() == 2


def test_restart_on_a_terminal_asks(monkeypatch):
    fill(100)
    stopped = interrupted_run(workers=1, batch_size=20, committed=1)
    monkeypatch.setattr(actions, "stdin_is_tty", lambda: True)
    monkeypatch.setattr(actions, "ask", lambda prompt: "")
    assert refused("--restart") == "--restart not confirmed; nothing was changed"
    assert Run.objects.get(pk=stopped.pk).state == Run.State.ACTIVE


def test_purge_deletes_old_finished_runs_with_their_shards_and_fingerprints():
    fill(100)
    run("regenerate_token_async", "--fingerprints")
    run("regenerate_token_async", "--restart", "--fingerprints")
    with pytest.raises(Stop):  # an unfinished third run: kept
        rotate_directly(
            restart=True,
            workers=1,
            batch_size=10,
            verbosity=0,
            fingerprints=True,
            batch_hook=fail_from_batch(2),
        )
    # --restart keeps the proof: every run's fingerprints are the first run's (each run
    # adds the values it replaced: 100, 100, and the third run's one batch of 10).
    first = Run.objects.order_by("pk").first()
    assert len(fingerprints_of(first)) == len(fingerprints_of()) == 210
    out, _ = run("regenerate_token_async", "--purge", "1")
    assert (
        out == "Purged 0 finished or abandoned runs of tickets.Ticket.token and 0 fingerprints.\n"
    )
    out, _ = run("regenerate_token_async", "--purge", "0")
    # The first run holds the proof of the unfinished one: it is kept until that one goes.
    assert out == (
        "Purged 1 finished or abandoned run of tickets.Ticket.token and 0 fingerprints.\n"
    )
    (kept,) = Run.objects.filter(state=Run.State.ACTIVE)
    assert kept.options["proof"] == first.pk
    assert set(Run.objects.values_list("pk", flat=True)) == {first.pk, kept.pk}
    assert len(fingerprints_of(first)) == len(fingerprints_of()) == 210
    assert Shard.objects.exclude(run__in=[first, kept]).count() == 0


def test_operator_flags_do_not_mix():
    with pytest.raises(CommandError, match="not allowed with argument"):
        call_command("regenerate_token_async", "--pause", "--cancel")
    assert refused("--status", "--restart") == (
        "--status cannot be combined with --restart; run them one at a time"
    )
