"""Batch size: fixed when asked, otherwise steered toward a target batch duration.

Small first batches give a quick first progress tick and a cheap rollback;
then each full batch moves the size toward ``rate x target`` (at most doubling
or halving per step, within bounds), so commits and WAL flushes stay few
while the work lost to a kill -9 stays under about ``target`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_BATCH = 100
MAX_BATCH = 50_000
FIRST_BATCH = 1_000
TARGET_SECONDS = 0.1


@dataclass
class BatchSizer:
    fixed: int | None = None
    size: int = FIRST_BATCH
    target: float = TARGET_SECONDS

    def __post_init__(self) -> None:
        if self.fixed is not None:
            self.size = self.fixed

    @classmethod
    def of(cls, batch_size: int | None, batch_seconds: float | None) -> BatchSizer:
        """The sizer for --batch-size and --batch-seconds (None: adaptive; TARGET_SECONDS)."""
        return cls(fixed=batch_size, target=batch_seconds or TARGET_SECONDS)

    def record(self, rows: int, seconds: float) -> None:
        """A committed batch of ``rows`` (its window) took ``seconds``."""
        if rows < self.size or seconds <= 0:
            return
        if self.fixed is not None:
            self.size = min(self.fixed, self.size * 2)  # back up after a shrink
            return
        ideal = rows / seconds * self.target
        self.size = int(max(MIN_BATCH, min(MAX_BATCH, self.size * 2, max(self.size / 2, ideal))))

    def shrink(self) -> None:
        """A lock or statement timeout: retry with half as many rows (and learn from it)."""
        self.size = max(1, self.size // 2)

    def describe(self) -> str:
        if self.fixed is not None:
            return f"{self.fixed:,} rows"
        return (
            f"adaptive, {MIN_BATCH:,} to {MAX_BATCH:,} rows "
            f"(starts at {FIRST_BATCH:,}, aims at {self.target:g} s per batch)"
        )
