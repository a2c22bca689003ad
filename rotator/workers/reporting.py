"""What the workers tell whoever watches them: rows done, why they wait, lines to show.

The command's progress display (command/progress.py) is one such sink; a task
queue's is silent or a logger. The workers never print themselves.
"""

from __future__ import annotations

from typing import Protocol


class ProgressSink(Protocol):
    def advance(self, rows: int, skipped: int = 0) -> None:
        """A batch committed: ``rows`` rotated, ``skipped`` planned rows left alone."""

    def tick(self) -> None:
        """About once a second, so that a stalled run still shows that it is stalled."""

    def set_status(self, reason: str | None, key: str = "") -> None:
        """Why the run is slowed or waiting (None: no longer), per ``key``."""

    def message(self, text: str, level: int = 1) -> None:
        """A line for people, shown from verbosity ``level`` on (never a value)."""

    def close(self) -> None: ...


class Silent:
    """A sink that shows nothing (a library call, a task with no display)."""

    def advance(self, rows: int, skipped: int = 0) -> None:
        pass

    def tick(self) -> None:
        pass

    def set_status(self, reason: str | None, key: str = "") -> None:
        pass

    def message(self, text: str, level: int = 1) -> None:
        pass

    def close(self) -> None:
        pass
