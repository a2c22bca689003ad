"""One combined progress display: a tqdm bar on a terminal, plain lines otherwise.

Rate and time remaining use this session's rows only, so a resumed run does
not count the rows an earlier session rotated as if they were done now.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from tqdm import tqdm


class Stream(Protocol):
    def write(self, msg: str = "", style_func: Any = None, ending: str | None = None) -> None: ...

    def flush(self) -> None: ...


def _plain(text: str) -> str:
    return text


def write(stream: Stream, text: str, ending: str | None = None) -> None:
    """Write uncoloured: Django styles a command's stderr as ERROR (red) on terminals."""
    stream.write(text, style_func=_plain, ending=ending)


class TqdmFile:
    """Lets tqdm write through Django's OutputWrapper, which would add newlines."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    def write(self, s: str) -> None:
        write(self.stream, s, ending="")

    def flush(self) -> None:
        self.stream.flush()


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    def __init__(
        self,
        stream: Stream,
        *,
        total: int,
        initial: int,
        verbosity: int,
        tty: bool,
        interval: float = 5.0,
        desc: str = "rotating",
    ) -> None:
        self.stream = stream
        self.total = total
        self.initial = min(initial, total)
        self.done = self.initial  # shown: clamped to the planned total
        self.rotated = 0  # this session's rows, unclamped (rows inserted in range count)
        self.verbosity = verbosity
        self.interval = interval
        self.started = time.monotonic()
        self.last_line = self.started
        self.status: str | None = None
        self.bar: tqdm | None = None
        if verbosity >= 1 and tty:
            self.bar = tqdm(
                total=total,
                initial=self.initial,
                desc=desc,
                unit=" rows",
                unit_scale=False,
                file=TqdmFile(stream),
                mininterval=0.5,
                smoothing=0.1,
                dynamic_ncols=True,
            )

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def rate(self) -> float:
        elapsed = self.elapsed
        return self.rotated / elapsed if elapsed > 0 else 0.0

    def advance(self, rows: int, skipped: int = 0) -> None:
        """``rows`` rotated; ``skipped`` rows of the plan that needed no new value."""
        self.rotated += rows
        rows += skipped
        rows = max(0, min(rows, self.total - self.done))  # never past 100%
        self.done += rows
        if self.bar is not None:
            self.bar.update(rows)
        elif self.verbosity >= 1 and time.monotonic() - self.last_line >= self.interval:
            self.line()

    def line(self) -> None:
        self.last_line = time.monotonic()
        pct = 100.0 * self.done / self.total if self.total else 100.0
        rate = self.rate()
        eta = format_duration((self.total - self.done) / rate) if rate > 0 else "unknown"
        write(
            self.stream,
            f"{self.done:,}/{self.total:,} rows ({pct:.1f}%), {rate:,.0f} rows/s, {eta} remaining",
        )
        self.stream.flush()

    def message(self, text: str, level: int = 1) -> None:
        if self.verbosity < level:
            return
        if self.bar is not None:
            self.bar.clear()
            write(self.stream, text)
            self.bar.refresh()
        else:
            write(self.stream, text)

    def tick(self) -> None:
        """Called about once a second: keep plain output alive during a stall."""
        stale = time.monotonic() - self.last_line >= self.interval
        if self.bar is None and self.verbosity >= 1 and stale:
            self.line()

    def set_status(self, reason: str | None) -> None:
        """Why the run is not moving (a lock wait, a throttle), or None when it moves."""
        if reason != self.status and reason is not None:
            self.message(reason)
        self.status = reason

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
