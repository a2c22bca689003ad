"""What the command shows of a check of the table (``--verify``), and Ctrl-C during it.

Progress goes to stderr, like a rotation's: on a terminal one line redrawn in
place ("Checking ...: step 2/3, comparing the values with the fingerprints,
0:04, about 0:09 left"), otherwise a plain line per step; nothing at verbosity
0. The time left is this check's own pace so far, spread by each step's usual
share of a check (``verification.STEP_WEIGHTS``): an estimate.

SIGINT and SIGTERM stop the check: the statement running is cancelled on the
server and the command exits with 130 or 143 and one line. A check only reads,
so nothing is lost; if the server does not answer the cancel, the process
ends ``HARD_EXIT_AFTER`` seconds later anyway, and at once on a second signal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

from rotator.command.bar import ERASE_LINE, Stream, write
from rotator.command.interrupts import HARD_EXIT_AFTER, STATUSES
from rotator.service.checking import CheckStopper
from rotator.text import format_duration


class CheckProgress:
    """The service's CheckEvents, shown on ``err``."""

    def __init__(self, err: Stream, label: str, verbosity: int, tty: bool) -> None:
        self.err, self.label, self.verbosity, self.tty = err, label, verbosity, tty
        self._drawn = False

    def check_step(self, done: int, steps: int, running: str, seconds: float, share: float) -> None:
        if self.verbosity < 1:
            return
        if done == steps:
            if self._drawn:
                write(self.err, "\r" + ERASE_LINE, ending="")
            if not self.tty:
                write(self.err, f"Checked {self.label} in {format_duration(seconds)}.")
            self._drawn = False
            return
        # The time left: this check's own pace, by each step's usual share of the check.
        left = f", about {format_duration(seconds * (1 - share) / share)} left" if share else ""
        text = (
            f"Checking {self.label}: step {done + 1}/{steps}, {running}, "
            f"{format_duration(seconds)}{left}"
        )
        if self.tty:
            write(self.err, "\r" + text + ERASE_LINE, ending="")
            self.err.flush()
            self._drawn = True
        else:
            write(self.err, text)


def _hard_exit(status: int, line: str) -> None:
    with contextlib.suppress(Exception):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    os._exit(status)


@contextlib.contextmanager
def stopped_by_signals(stopper: CheckStopper, what: str) -> Iterator[None]:
    """While a check runs: SIGINT and SIGTERM stop it (in the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)
        status = STATUSES[signal.Signals(seen[0])]
        line = f"Interrupted by {signal.Signals(seen[0]).name}: {what}"
        if len(seen) > 1:
            _hard_exit(int(status), line)
        stopper.stop(signal.Signals(signum).name, status)
        timer = threading.Timer(HARD_EXIT_AFTER, _hard_exit, args=(int(status), line))
        timer.daemon = True
        timer.start()

    previous = {signum: signal.signal(signum, on_signal) for signum in STATUSES}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
