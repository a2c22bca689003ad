"""What one rotation asks for: the single source of its defaults and of their validation.

The command builds its flags from these defaults (command/arguments.py); a
task queue or a test builds ``Options`` directly. ``validate()`` refuses bad
values before anything touches the database.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from rotator.errors import RotatorError

#: Rows of one batch at most: its new values are held in memory at once.
MAX_BATCH_SIZE = 100_000
#: Progress displays: a bar on a terminal or plain lines otherwise (auto), or one of them.
PROGRESS_MODES = ("auto", "bar", "plain", "json", "none")


@dataclass(frozen=True)
class Options:
    workers: int = 4
    #: Rows per batch; None: adaptive (workers/sizing.py).
    batch_size: int | None = None
    #: What the adaptive size aims at, in seconds per batch; None: TARGET_SECONDS. Shorter
    #: batches hold their rows' locks for less time (the application's worst wait).
    batch_seconds: float | None = None
    #: Shards to plan; None: 4 x workers.
    shards: int | None = None
    #: Dotted path of a callable making one new value, "database", or None (the field's default).
    generator: str | None = None
    restart: bool = False
    dry_run: bool = False
    verbosity: int = 1
    #: Whether the progress stream is a terminal (the command says; a task says no).
    tty: bool = False
    progress_interval: float = 5.0
    progress: str = "auto"
    #: Throttling (workers/throttle.py): rows per second for this process's workers,
    #: a dotted path of a pause check, PostgreSQL standby lag in seconds.
    max_rate: float | None = None
    pause_when: str | None = None
    max_replication_lag: float | None = None
    #: How to run this rotation again, for the lines that say how to resume.
    resume_hint: str = "the same command"
    #: Seconds a batch may wait for a row lock before it rolls back and retries smaller.
    lock_timeout: float = 2.0
    #: Seconds to wait for the database to come back after a lost connection.
    reconnect_timeout: float = 60.0
    #: Give NULL rows a value too (by default NULL, "no credential issued", stays NULL).
    fill_nulls: bool = False
    #: Called inside every batch transaction, after the UPDATE (a test seam).
    batch_hook: Callable[[Any], None] | None = None
    #: Fingerprint each row's value in its batch, so that a check of the table can prove
    #: the run before it is finished, and --verify later (service/fingerprints.py).
    fingerprints: bool = True
    #: Seconds after the last batch before the final check (service/finishing.py); None:
    #: settings.ROTATOR_SETTLE_SECONDS, else 30.
    settle: float | None = None

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of option ``name`` (for the command's flags and help)."""
        for f in fields(cls):
            if f.name == name:
                return f.default
        raise AssertionError(f"unreachable: Options has no field {name!r}")

    def validate(self) -> None:
        """Raise RotatorError (one line naming the flag and the value) for a bad option."""
        if self.workers < 1:
            raise RotatorError(f"--workers must be at least 1, got {self.workers!r}")
        if self.batch_size is not None and not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise RotatorError(
                f"--batch-size must be from 1 to {MAX_BATCH_SIZE:,}, got {self.batch_size!r}"
            )
        _positive("--batch-seconds", self.batch_seconds, "seconds")
        if self.batch_seconds is not None and self.batch_size is not None:
            raise RotatorError(
                "--batch-seconds steers the adaptive batch size; it cannot be used with "
                "--batch-size (a fixed size)"
            )
        if self.lock_timeout <= 0:
            raise RotatorError(
                f"--lock-timeout must be more than 0 seconds, got {self.lock_timeout!r}"
            )
        if self.reconnect_timeout < 0:
            raise RotatorError(
                f"--reconnect-timeout must be 0 seconds or more, got {self.reconnect_timeout!r}"
            )
        if self.shards is not None and self.shards < 1:
            raise RotatorError(f"--shards must be at least 1, got {self.shards!r}")
        if self.progress not in PROGRESS_MODES:
            raise RotatorError(
                f"--progress must be one of {', '.join(PROGRESS_MODES)}; got {self.progress!r}"
            )
        interval = self.progress_interval
        if not (isinstance(interval, int | float) and math.isfinite(interval) and interval > 0):
            raise RotatorError(
                f"--progress-interval must be a number of seconds above 0, got {interval!r}"
            )
        _positive("--max-rate", self.max_rate, "rows per second")
        if self.settle is not None and not (math.isfinite(self.settle) and self.settle >= 0):
            raise RotatorError(f"--settle must be a number of seconds >= 0, got {self.settle!r}")
        _positive("--max-replication-lag", self.max_replication_lag, "seconds")


def _positive(flag: str, value: float | None, unit: str) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise RotatorError(f"{flag} must be a number of {unit} above 0, got {value!r}")
