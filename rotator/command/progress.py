"""One progress display for all workers: a bar, plain log lines, JSON lines, or none.

Rate and time remaining use this session's rows over the last 30 s of wall
time, throttling, pauses and lock waits included, so a resumed run does not
count an earlier session's rows, and a slowed run's estimate grows instead of
promising the old speed. The estimate is shown once it means something (a few
seconds and a few batches in); before that the display says "estimating".

The engine calls ``advance()`` after each batch, ``tick()`` about once a
second so that a stalled run still redraws and still writes a line every
``interval`` seconds, ``set_status()`` with why it waits (a lock, a throttle,
a pause), and ``message()`` for lines above the bar.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rotator.command.bar import Bar, Stream, TqdmFile, write
from rotator.command.rate import WINDOW, RecentRate
from rotator.text import format_duration

__all__ = ["Progress", "Stream", "TqdmFile", "format_duration", "write"]

#: The time remaining is an estimate only this long after the first batch, and
#: after this many batches.
SETTLE_SECONDS = 2.0
SETTLE_BATCHES = 3


def resolve_mode(mode: str, tty: bool, verbosity: int) -> str:
    if verbosity < 1:
        return "none"
    if mode == "auto":
        return "bar" if tty else "plain"
    return mode


class Progress:
    def __init__(
        self,
        stream: Stream,
        *,
        total: int,
        initial: int,
        verbosity: int,
        tty: bool = False,
        mode: str = "auto",
        interval: float = 5.0,
        desc: str = "rotating",
        run_id: int | None = None,
        workers: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.stream = stream
        self.total = total
        self.initial = min(initial, total)
        self.done = self.initial  # shown: clamped to the planned total
        self.rotated = 0  # this session's rows, unclamped (rows inserted in range count)
        self.batches = 0
        self.verbosity = verbosity
        self.mode = resolve_mode(mode, tty, verbosity)
        self.interval = interval
        self.run_id = run_id
        self.workers = workers
        self.clock, self.wall = clock, wall
        self.started = clock()
        self.last_line = self.started
        self.recent = RecentRate(WINDOW)
        self.statuses: dict[str, str] = {}
        self.bar: Bar | None = None
        if self.mode == "bar":
            self.bar = Bar(
                total=total,
                initial=self.initial,
                desc=desc,
                file=TqdmFile(stream),
                mininterval=0.5,
                fields=self._bar_fields,
            )

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    @property
    def status(self) -> str | None:
        """Why the run is slowed or waiting (every reason, "; "-joined), or None."""
        return "; ".join(self.statuses.values()) or None

    def rate(self) -> float:
        """Rows per second over the recent wall-clock window, stalls included."""
        return self.recent.rate(self.clock())

    def remaining(self) -> float | None:
        """Seconds left at the recent rate; None while estimating or when nothing moves."""
        if self.done >= self.total:
            return 0.0
        if not self._settled():
            return None
        rate = self.rate()
        return (self.total - self.done) / rate if rate > 0 else None

    def _settled(self) -> bool:
        since = self.recent.since
        return (
            since is not None
            and self.clock() - since >= SETTLE_SECONDS
            and self.batches >= SETTLE_BATCHES
        )

    def _remaining_text(self, short: bool) -> str:
        seconds = self.remaining()
        if seconds is not None:
            return f"{format_duration(seconds)} {'left' if short else 'remaining'}"
        if not self._settled():
            return "estimating" if short else "estimating time remaining"
        return "no estimate" if short else "no estimate: no rows in the last 30 s"

    def set_status(self, reason: str | None, key: str = "") -> None:
        """Show ``reason`` (None clears it); each ``key`` (e.g. a worker) has its own."""
        if reason is None:
            changed = self.statuses.pop(key, None) is not None
        else:
            changed = self.statuses.get(key) != reason
            self.statuses[key] = reason
        if changed and self.bar is not None:
            self.bar.refresh()

    def advance(self, rows: int, skipped: int = 0) -> None:
        """``rows`` rotated; ``skipped`` rows of the plan that needed no new value."""
        self.rotated += rows
        self.batches += 1
        self.recent.add(self.clock(), self.rotated)
        rows = max(0, min(rows + skipped, self.total - self.done))  # never past 100%
        self.done += rows
        if self.bar is not None:
            self.bar.update(rows)
        else:
            self._line_if_due()

    def tick(self) -> None:
        """Called about once a second: redraw, and write a line when one is due."""
        self.recent.add(self.clock(), self.rotated)
        if self.bar is not None:
            self.bar.refresh()
        else:
            self._line_if_due()

    def _line_if_due(self) -> None:
        if self.mode in ("plain", "json") and self.clock() - self.last_line >= self.interval:
            self.line()

    def snapshot(self) -> dict[str, Any]:
        """What one JSON line holds (also the plain line's numbers)."""
        seconds = self.remaining()
        return {
            "time": self._stamp(),
            "run": self.run_id,
            "rows_done": self.done,
            "rows_total": self.total,
            "percent": round(100.0 * self.done / self.total, 1) if self.total else 100.0,
            "rows_per_s": round(self.rate()),
            "remaining_s": None if seconds is None else round(seconds),
            "elapsed_s": round(self.elapsed),
            "workers": self.workers,
            "status": self.status,
        }

    def line(self) -> None:
        self.last_line = self.clock()
        if self.mode == "json":
            self._json(event="progress", message=None)
            return
        pct = 100.0 * self.done / self.total if self.total else 100.0
        status = f"; {self.status}" if self.status else ""
        self._write(
            f"{self._prefix()}{self.done:,}/{self.total:,} rows ({pct:.1f}%), "
            f"{self.rate():,.0f} rows/s, {self._remaining_text(short=False)}{status}"
        )

    def message(self, text: str, level: int = 1) -> None:
        if self.verbosity < level:
            return
        text = text.rstrip()
        if self.mode == "json":
            self._json(event="message", message=text)
        elif self.mode == "plain":
            self._write(f"{self._prefix()}{text}")
        else:
            if level >= 2:
                text = f"{self.wall():%H:%M:%SZ} {text}"
            if self.bar is not None:
                self.bar.clear()
                self._write(text)
                self.bar.refresh()
            else:
                self._write(text)

    def close(self) -> None:
        self.statuses.clear()  # the last frame or line says how it ended, not why it waited
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.mode == "json":
            self._json(event="end", message=None)

    def _stamp(self) -> str:
        return f"{self.wall():%Y-%m-%dT%H:%M:%SZ}"

    def _prefix(self) -> str:
        run = f" run {self.run_id}" if self.run_id is not None else ""
        return f"{self._stamp()}{run}: "

    def _json(self, *, event: str, message: str | None) -> None:
        self._write(json.dumps({**self.snapshot(), "event": event, "message": message}))

    def _write(self, text: str) -> None:
        write(self.stream, text)
        self.stream.flush()

    def _bar_fields(self) -> dict[str, str]:
        return {
            "counts": f"{self.done:,}/{self.total:,}",
            "elapsed_t": format_duration(self.elapsed),
            "rate_t": f"{self.rate():,.0f} rows/s",
            "left_t": self._remaining_text(short=True),
            "status": self.status or "",
        }
