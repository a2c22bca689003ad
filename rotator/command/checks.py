"""What the command shows of a check of the table (``--verify``), and Ctrl-C during it.

Progress goes to stderr, like a rotation's: on a terminal one line redrawn in
place, never wider than the terminal ("Checking tickets.Ticket.token: step
2/3, comparing values, 0:04, 0:09 left"), otherwise a plain line per step;
nothing at verbosity 0. The time left is this check's own pace so far, spread
by each step's usual share of a check (``verification.STEP_WEIGHTS``): an
estimate.

SIGINT and SIGTERM stop the check: the statement running is cancelled on the
server and the command exits with 130 or 143 and one line. A check only reads,
so nothing is lost; if the server does not answer the cancel, the process
ends ``HARD_EXIT_AFTER`` seconds later anyway, and at once on a second signal.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from rotator.command.bar import ERASE_LINE, Stream, write
from rotator.text import format_duration

#: How often the terminal's line is redrawn while a statement runs.
TICK_SECONDS = 1.0
#: The width assumed when the stream cannot say (a StringIO in tests, a closed pty).
DEFAULT_COLUMNS = 80


class CheckProgress:
    """The service's CheckEvents, shown on ``err``; ``plain`` False: on a terminal only."""

    def __init__(
        self, err: Stream, label: str, verbosity: int, tty: bool, plain: bool = True
    ) -> None:
        self.err, self.label, self.tty = err, label, tty
        self.shown = verbosity >= 1 and (tty or plain)
        self._lock = threading.Lock()
        self._line: tuple[int, int, str, float, float] | None = None
        self._began = 0.0
        self._ticker: threading.Thread | None = None

    def check_step(self, done: int, steps: int, running: str, seconds: float, share: float) -> None:
        if not self.shown:
            return
        with self._lock:
            if done == 0:
                self._began = time.monotonic() - seconds
            self._line = (done, steps, running, seconds, share) if done < steps else None
            if self._line is None:
                if self.tty:
                    write(self.err, "\r" + ERASE_LINE, ending="")
                else:
                    write(self.err, f"Checked {self.label} in {format_duration(seconds)}.")
                return
            self._draw()
        if self.tty and self._ticker is None:
            self._ticker = threading.Thread(
                target=self._tick, name="rotator-check-bar", daemon=True
            )
            self._ticker.start()

    def close(self) -> None:
        """After a check that ended early (an error, a signal): erase its line, if drawn."""
        with self._lock:
            if self._line is not None and self.tty:
                write(self.err, "\r" + ERASE_LINE, ending="")
            self._line = None

    def _text(self, now: float) -> str:
        if self._line is None:
            raise AssertionError("unreachable: drawn only while a step runs")
        done, steps, running, at, share = self._line
        # The time left: this check's own pace, by each step's usual share of the check.
        left = f", {format_duration(max(0.0, at / share - now))} left" if share else ""
        step = f"step {done + 1}/{steps}, " if steps > 1 else ""
        return f"Checking {self.label}: {step}{running}, {format_duration(now)}{left}"

    def _draw(self) -> None:
        if self._line is None:
            return
        if self.tty:
            now = time.monotonic() - self._began
            # Never wider than the terminal: a wrapped line is not erased by the next frame.
            text = self._text(now)[: max(1, self._columns() - 1)]
            write(self.err, "\r" + text + ERASE_LINE, ending="")
            self.err.flush()
        else:
            write(self.err, self._text(self._line[3]))

    def _columns(self) -> int:
        """The terminal's width now (measured at each frame: a resize is followed)."""
        real: Any = getattr(self.err, "_out", self.err)  # behind Django's OutputWrapper
        try:
            return os.get_terminal_size(real.fileno()).columns
        except (AttributeError, OSError, ValueError):
            return DEFAULT_COLUMNS

    def _tick(self) -> None:
        """Redraw the terminal's line every second: one statement may take minutes."""
        while True:
            time.sleep(TICK_SECONDS)
            with self._lock:
                if self._line is None:
                    self._ticker = None
                    return
                self._draw()
