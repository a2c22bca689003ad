"""The recent rate: rows per second over the last seconds of wall time.

Wall time, not time spent in batches: throttling, pauses, lock waits and
stalls all slow the rate, so the time remaining computed from it is honest.
"""

from __future__ import annotations

from collections import deque

#: Seconds of wall time the rate is measured over.
WINDOW = 30.0


class RecentRate:
    """Rows per second over the last ``window`` seconds of wall time.

    Measured from the first finished batch on: connecting and the sizer's small
    first batches say little about the pace of the rest of the run.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    @property
    def since(self) -> float | None:
        """Where the measurement starts (the first batch, later the window's edge)."""
        return self.samples[0][0] if self.samples else None

    def add(self, at: float, rows: int) -> None:
        if not self.samples and rows == 0:
            return
        self.samples.append((at, rows))
        # Keep one sample at or before the window's start: it anchors the span.
        while len(self.samples) > 2 and self.samples[1][0] <= at - self.window:
            self.samples.popleft()

    def rate(self, at: float) -> float:
        if not self.samples:
            return 0.0
        since, rows_then = self.samples[0]
        span = at - since
        return (self.samples[-1][1] - rows_then) / span if span > 0 else 0.0
