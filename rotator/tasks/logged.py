"""A progress sink for tasks: what a worker would show, as log records (never a value)."""

from __future__ import annotations

import logging


class LogSink:
    """Messages and waits go to the logger; rows are counted, not logged per batch."""

    def __init__(self, log: logging.Logger, run_id: int) -> None:
        self.log, self.run_id = log, run_id
        self.rows = 0
        self.statuses: dict[str, str | None] = {}

    def advance(self, rows: int, skipped: int = 0) -> None:
        self.rows += rows

    def tick(self) -> None:
        pass

    def set_status(self, reason: str | None, key: str = "") -> None:
        if self.statuses.get(key) != reason:
            self.statuses[key] = reason
            if reason:
                self.log.info("run %s: %s", self.run_id, reason)

    def message(self, text: str, level: int = 1) -> None:
        self.log.log(logging.INFO if level <= 1 else logging.DEBUG, "run %s: %s", self.run_id, text)

    def close(self) -> None:
        pass
