"""How long a worker waits before it retries a batch after a passing fault, and when it
gives up (see rotator/faults.py for the kinds)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from rotator.faults import Fault, Kind

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
