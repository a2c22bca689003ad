"""What one invocation asks for: the engine's input, independent of argv."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Options:
    workers: int = 4
    batch_size: int | None = None
    shards: int | None = None
    generator: str | None = None
    restart: bool = False
    dry_run: bool = False
    verbosity: int = 1
    tty: bool = False
    progress_interval: float = 5.0
    #: Progress display: auto (a bar on a terminal, plain lines otherwise), bar, plain,
    #: json or none (rotator/progress.py).
    progress: str = "auto"
    #: Throttling (rotator/throttle.py): rows per second for this process's workers,
    #: a dotted path of a pause check, PostgreSQL standby lag in seconds.
    max_rate: float | None = None
    pause_when: str | None = None
    max_replication_lag: float | None = None
    resume_hint: str = "the same command"
    #: Seconds a batch may wait for a row lock before it rolls back and retries smaller.
    lock_timeout: float = 2.0
    #: Seconds to wait for the database to come back after a lost connection.
    reconnect_timeout: float = 60.0
    #: Give NULL rows a value too (by default NULL, "no credential issued", stays NULL).
    fill_nulls: bool = False
    #: Called inside every batch transaction, after the UPDATE (a test seam).
    batch_hook: Callable[[Any], None] | None = None
    #: Fingerprint the planned rows' values for --verify (see rotator/fingerprints.py).
    fingerprints: bool = False
