"""Passing faults of a live database, by class, and how long to wait before a retry.

A deadlock, a serialization failure, a lock or statement timeout, a
terminated backend or a restarting server are normal on a live database: the
batch rolls back and is retried with fresh values. Each builder maps its
driver's errors (by SQLSTATE or error code, never by message) to a kind; the
engine decides what to do with the kind.
"""

from __future__ import annotations

import enum
import random
import time
from dataclasses import dataclass, field


class Kind(enum.Enum):
    LOCK = "lock"  # a lock wait timed out: retry smaller, after a pause
    CONFLICT = "conflict"  # deadlock, serialization failure: retry after a pause
    TIMEOUT = "timeout"  # a statement timeout the rotator did not ask for: retry smaller
    COLLISION = "collision"  # a new value was taken meanwhile: retry with other values
    CONNECTION = "connection"  # the session is gone: reconnect, then retry


@dataclass(frozen=True)
class Fault:
    kind: Kind
    what: str  # for people: "deadlock detected", "terminated by the server", ...

    @property
    def shrinks(self) -> bool:
        return self.kind in (Kind.LOCK, Kind.TIMEOUT)


#: Retries of one batch before the run stops (connection faults: see reconnect_timeout).
MAX_RETRIES = 10
#: A row lock held by the application is waited out this long (in lock-timeout slices).
LOCK_PATIENCE = 300.0
FIRST_PAUSE = 0.05
MAX_PAUSE = 5.0


@dataclass
class Retries:
    """Consecutive faults of one worker; reset by every batch that commits."""

    count: int = 0
    since: float = field(default_factory=time.monotonic)
    last: Fault | None = None

    def record(self, fault: Fault) -> float:
        """Count ``fault``; return how long to pause before the next try."""
        if self.count == 0:
            self.since = time.monotonic()
        self.count += 1
        self.last = fault
        pause = min(MAX_PAUSE, FIRST_PAUSE * 2 ** (self.count - 1))
        return pause * (0.5 + random.random())  # jitter: workers do not retry in step

    @property
    def exhausted(self) -> bool:
        if self.last is not None and self.last.kind is Kind.LOCK:
            return self.seconds > LOCK_PATIENCE
        return self.count > MAX_RETRIES

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.since if self.count else 0.0

    def reset(self) -> None:
        self.count = 0
        self.last = None
