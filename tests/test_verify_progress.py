"""--verify shows its steps on stderr (with the time left once it can say), and a stopped
check raises Interrupted with the stopper's status, changing nothing."""

from __future__ import annotations

import re

import pytest

from rotator.errors import ExitStatus, Interrupted
from rotator.service import verification
from rotator.service.checking import CheckStopper
from rotator.target import resolve_target
from tests.conftest import fill, run
from tests.support import tokens

pytestmark = pytest.mark.django_db(transaction=True)

STEP = re.compile(
    r"^Checking tickets\.Ticket\.token: step (\d)/(\d), [a-z ]+, \d+:\d\d(, \d+:\d\d left)?$"
)


def test_verify_prints_its_steps_on_stderr_and_the_report_on_stdout():
    fill(200)
    run("regenerate_token_async", "-v", "0")
    out, err = run("regenerate_token_async", "--verify")
    lines = err.splitlines()
    steps = [STEP.match(line) for line in lines[:-1]]
    assert all(steps), err
    assert [int(m.group(1)) for m in steps] == list(range(1, len(steps) + 1))
    assert all(int(m.group(2)) == len(steps) for m in steps)
    assert steps[0].group(3) is None  # nothing to go by before the first step ends
    assert re.fullmatch(r"Checked tickets\.Ticket\.token in \d+:\d\d\.", lines[-1]), err
    assert "0 of 200 rows still hold a pre-rotation value" in out.splitlines()


def test_on_a_terminal_the_steps_redraw_one_line():
    fill(50)
    run("regenerate_token_async", "-v", "0")
    _, err = run("regenerate_token_async", "--verify", tty=True)
    assert "\n" not in err.strip("\n"), repr(err)
    assert err.count("\r") >= 2 and err.endswith("\r\x1b[K"), repr(err)


def test_nothing_on_stderr_at_verbosity_0():
    fill(50)
    run("regenerate_token_async", "-v", "0")
    out, err = run("regenerate_token_async", "--verify", "-v", "0")
    assert (out, err) == ("", "")


def test_a_stopped_check_raises_interrupted_with_the_stoppers_status():
    fill(50)
    run("regenerate_token_async", "-v", "0")
    before = tokens()
    stopper = CheckStopper()
    stopper.stop("SIGTERM", ExitStatus.SIGTERM)
    with pytest.raises(Interrupted) as stopped:
        verification.verify(resolve_target("tickets.Ticket.token", "default"), stopper=stopper)
    assert stopped.value.status == ExitStatus.SIGTERM
    assert str(stopped.value) == (
        "Interrupted by SIGTERM: --verify of tickets.Ticket.token stopped; nothing was changed"
    )
    assert tokens() == before


def test_the_check_that_ends_a_run_shows_on_a_terminal_only():
    fill(100)
    _, err = run("regenerate_token_async", tty=True)
    assert (
        "\rChecking tickets.Ticket.token: comparing with the run's fingerprints, 0:00\x1b[K"
    ) in err, repr(err)
    _, plain = run("regenerate_token_async", "--restart", "--yes")
    assert "Checking" not in plain and "Checked" not in plain
