"""The bar in a real pseudo-terminal: one line, redrawn in place, through a resize.

``manage.py regenerate_token_async`` runs as a child whose stdin, stdout and
stderr are a pty of a known size (``TIOCSWINSZ``, and ``COLUMNS`` to match).
The terminal turns every newline into CR LF, so the whole captured output must
be exactly four lines: "Planning", the plan, the bar (frames joined by
carriage returns), the summary. Any frame that wrapped or left a line behind breaks that.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from dataclasses import dataclass

import pytest

from tests.conftest import ROOT, fill, manage, subprocess_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROWS = 20_000
RATE = 4_000  # rows/s: about five seconds, a dozen frames
TIMEOUT = 60
FRAME = re.compile(r"^(?:tickets\.Ticket\.token: )? *\d+%\|[ ▏▎▍▌▋▊▉█]*\| ")


def set_size(fd: int, columns: int, lines: int = 24) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))


@dataclass
class Screen:
    text: str
    #: Index in ``text`` where the terminal was resized (len(text) if never).
    resized_at: int
    #: The terminal's width at the end.
    columns: int


def run_in_terminal(*args: str, columns: int, resize_to: int | None = None) -> Screen:
    master, slave = pty.openpty()
    set_size(slave, columns)
    env = dict(subprocess_env(), COLUMNS=str(columns), LINES="24", TERM="xterm-256color")
    child = subprocess.Popen(
        manage("regenerate_token_async", *args),
        cwd=ROOT,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    output = bytearray()
    resized_at = None
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child is gone and the terminal closed
                    break
                if not chunk:
                    break
                output += chunk
            frames_so_far = output.count(b"\x1b[K")
            if resize_to is not None and resized_at is None and frames_so_far >= 4:
                set_size(master, resize_to)
                child.send_signal(signal.SIGWINCH)
                resized_at = len(output.decode("utf-8", "replace"))
        assert child.wait(TIMEOUT) == 0, output.decode("utf-8", "replace")
    finally:
        if child.poll() is None:
            child.kill()
        os.close(master)
    text = output.decode("utf-8")
    width = columns if resize_to is None else resize_to
    return Screen(text, len(text) if resized_at is None else resized_at, width)


def bar_frames(screen: Screen) -> tuple[list[str], list[str]]:
    """The frames drawn before and after the resize; checks the three-line shape."""
    lines = screen.text.split("\r\n")
    assert lines[-1] == "", repr(screen.text[-200:])
    assert len(lines) == 6, "a frame wrapped or left a line behind:\n" + "\n".join(
        repr(line[:300]) for line in lines
    )
    planning, planned, bar, verified, summary = lines[:5]
    assert planning.startswith("Planning a run of ") and planned.startswith("Planned run ")
    # Before it, the check that ends the run drew its line(s) and erased them.
    checks, _, verified = verified.rpartition("\r\x1b[K")
    for frame in filter(None, checks.split("\r")):
        text = frame.removesuffix("\x1b[K")
        if not text:
            continue  # an erase
        assert text.startswith("Checking tickets.Ticket.token: comparing with "), repr(frame)
        assert len(text) < screen.columns, repr(frame)  # fits: never wraps a line behind
    assert verified.startswith("Verified: no planned row of tickets.Ticket.token holds")
    assert summary.startswith("Rotated 20,000 rows")
    assert bar.startswith("\r") and bar.endswith("\x1b[K")
    start = screen.text.index(bar)
    before, after = [], []
    position = start
    for frame in bar.split("\r"):
        if frame:
            assert frame.endswith("\x1b[K") and frame.count("\x1b[K") == 1, repr(frame)
            text = frame.removesuffix("\x1b[K")
            assert FRAME.match(text), repr(text)
            assert text == text.rstrip(), f"trailing spaces: {text!r}"
            (before if position < screen.resized_at else after).append(text)
        position += len(frame) + 1
    return before, after


def test_at_80_columns_the_bar_redraws_on_one_line():
    fill(ROWS)
    screen = run_in_terminal("--workers", "1", "--max-rate", str(RATE), columns=80)
    frames, _ = bar_frames(screen)
    assert len(frames) >= 5
    assert all(len(frame) <= 79 for frame in frames)
    assert max(len(frame) for frame in frames) >= 70  # it uses the width it has
    assert "█" in screen.text  # unicode blocks, not "#"
    assert any(frame.endswith("throttled: --max-rate 4,000 rows/s") for frame in frames)
    # The last frame: 100%, and no stale "throttled" once the run is over.
    assert re.search(r"\| 20,000/20,000 \[0:0\d, [\d,]+ rows/s, 0:00 left\]$", frames[-1])


def test_a_resize_mid_run_keeps_the_bar_on_one_line_and_fits_the_new_width():
    fill(ROWS)
    screen = run_in_terminal("--workers", "1", "--max-rate", str(RATE), columns=100, resize_to=50)
    before, after = bar_frames(screen)
    assert len(before) >= 4 and len(after) >= 2, (len(before), len(after))
    assert all(len(frame) <= 99 for frame in before)
    assert max(len(frame) for frame in before) > 60
    # The frame in flight when the size changed may still be the old width.
    assert all(len(frame) <= 49 for frame in after[1:]), after
