"""Slowing a run down on a busy database: a rate limit and pauses, with a visible reason.

Workers call ``await throttle.before_batch(size, stop)`` before each batch
(it returns the size to use) and ``throttle.after_batch(size, rows)`` after.

- ``--max-rate``: one limit for all workers of this process, kept on the event
  loop as a schedule of reservations: a batch of n rows may start no earlier
  than the previous reservation's end, and books n / rate seconds. Idle time
  is not banked, so there is no burst after a pause, and a batch is cut to
  half a second's worth of rows so the load stays smooth. The limit is per
  process: with several processes on one run give each its share.
- ``--pause-when`` and ``--max-replication-lag``: checks run between batches,
  at most once a second for all workers together, on a daemon thread of their
  own (one connection, outside any transaction), so that a check that hangs
  holds up neither a worker's thread nor Ctrl-C nor the process's exit. While
  one returns a reason, every worker waits and the progress status says
  ``paused: <reason>``; a check that has not answered in ``CHECK_TIMEOUT``
  seconds is a reason too (``paused: --pause-when '...' did not answer in
  10 s``), until it answers. A check that raises stops the run with its
  exception's class only: its message may hold a value, as a generator's may.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.db import connections
from django.utils.module_loading import import_string

from rotator.errors import RotatorError
from rotator.sql.replication import check_replication_lag, replication_lag
from rotator.workers.checker import Checker

if TYPE_CHECKING:
    from rotator.service.options import Options
    from rotator.workers.reporting import ProgressSink

#: A pause check: None to go on, or the reason to wait.
Check = Callable[[], "str | None"]
#: Seconds of rows at --max-rate that one batch may hold.
BURST = 0.5
#: Seconds between two runs of the pause checks.
CHECK_EVERY = 1.0
#: Seconds a pause check may take before its silence is the reason to pause.
CHECK_TIMEOUT = 10.0


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,g}"


def load_pause_check(path: str) -> Check:
    try:
        check = import_string(path)
    except ImportError as exc:
        raise RotatorError(
            f"--pause-when {path!r} cannot be imported ({exc}); give the dotted path of a "
            "callable that returns None or the reason to pause"
        ) from None
    if not callable(check):
        raise RotatorError(
            f"--pause-when {path!r} is a {type(check).__name__}, not a callable; give one "
            "that returns None or the reason to pause"
        )
    return check


def check_throttle_options(options: Options, alias: str) -> None:
    """Refuse throttle flags that cannot work here (Options.validate() checked their values)."""
    if options.pause_when is not None:
        load_pause_check(options.pause_when)
    if options.max_replication_lag is not None:
        check_replication_lag(alias, options.max_replication_lag)


def lag_check(alias: str, limit: float) -> Check:
    def check() -> str | None:
        lag = replication_lag(connections[alias])
        if lag is not None and lag > limit:
            return f"replica lag {lag:.1f} s (--max-replication-lag {limit:g})"
        return None

    return check


async def sleep_unless_stopped(seconds: float, stop: asyncio.Event | None) -> None:
    """Sleep, but wake at once when ``stop`` is set (Ctrl-C must not wait out a pause)."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class Throttle:
    """Rate limit and pauses shared by one process's workers (event loop only)."""

    def __init__(
        self,
        *,
        max_rate: float | None = None,
        checks: list[tuple[str, Check]] | None = None,
        status: Callable[[str | None], None] | None = None,
        check_every: float = CHECK_EVERY,
        check_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_rate = max_rate
        self.cap = max(1, int(max_rate * BURST)) if max_rate else None
        self.checks = checks or []
        self.status = status
        self.check_every = check_every
        self.clock = clock
        self.next_free = 0.0
        self.waiting = 0
        self.throttled = False
        self.paused: str | None = None
        self.checked_at: float | None = None
        self.lock = asyncio.Lock()
        self.shown: str | None = None
        self.check_timeout = check_timeout
        self.checker = Checker(self._run_checks)
        #: The checks' call in flight, and when it must have answered (time.monotonic()).
        self.pending: tuple[asyncio.Future[Any], float] | None = None

    @classmethod
    def from_options(cls, options: Options, alias: str, progress: ProgressSink) -> Throttle:
        checks = []
        if options.pause_when is not None:
            check = load_pause_check(options.pause_when)
            checks.append((f"--pause-when {options.pause_when!r}", check))
        if options.max_replication_lag is not None:
            checks.append(("--max-replication-lag", lag_check(alias, options.max_replication_lag)))
        return cls(
            max_rate=options.max_rate,
            checks=checks,
            status=lambda reason: progress.set_status(reason, key="throttle"),
            check_every=CHECK_EVERY,  # read at call time: a test shortens it
        )

    def close(self) -> None:
        """The run is over: end the checks' thread (a hung check's is left, a daemon)."""
        hung = self.pending is not None and not self.pending[0].done()
        self.checker.close(wait=0.0 if hung else 1.0)  # Ctrl-C must not wait on a hung check

    async def before_batch(self, rows: int, stop: asyncio.Event | None = None) -> int:
        """Wait while paused or over the rate; return how many rows the batch may take."""
        if self.checks:
            await self._wait_while_paused(stop)
        if self.max_rate is None or self.cap is None or (stop is not None and stop.is_set()):
            return rows
        rows = min(rows, self.cap)
        now = self.clock()
        start = max(now, self.next_free)
        self.next_free = start + rows / self.max_rate
        if start <= now:
            if self.waiting == 0:
                self._show(throttled=False)
            return rows
        self.waiting += 1
        self._show(throttled=True)
        try:
            await sleep_unless_stopped(start - now, stop)
        finally:
            self.waiting -= 1
        return rows

    def after_batch(self, planned: int, rows: int) -> None:
        """Give back the reservation of rows the batch did not find (a shard's last batch)."""
        if self.max_rate and rows < planned:
            self.next_free -= (planned - rows) / self.max_rate

    async def _wait_while_paused(self, stop: asyncio.Event | None) -> None:
        while True:
            async with self.lock:
                due = self.checked_at is None or self.clock() - self.checked_at >= self.check_every
                if due:
                    reason = await self._ask(stop)
                    if stop is not None and stop.is_set():
                        return
                    self.checked_at = self.clock()
                    self.paused = reason
                    self._show()
            if self.paused is None or (stop is not None and stop.is_set()):
                return
            assert self.checked_at is not None
            await sleep_unless_stopped(
                max(0.0, self.checked_at + self.check_every - self.clock()), stop
            )
            if stop is not None and stop.is_set():
                return

    async def _ask(self, stop: asyncio.Event | None) -> str | None:
        """The checks' answer; their silence past the timeout, or a stop, ends the wait."""
        timeout = CHECK_TIMEOUT if self.check_timeout is None else self.check_timeout
        if (
            self.pending is not None
            and self.pending[0].done()
            and time.monotonic() > self.pending[1]
        ):
            self.pending = None  # a late answer is stale: ask again
        if self.pending is None:
            self.pending = (self.checker.submit(), time.monotonic() + timeout)
        future, deadline = self.pending
        waits: set[asyncio.Future[Any]] = {future}
        stopped = None
        if stop is not None:
            stopped = asyncio.ensure_future(stop.wait())
            waits.add(stopped)
        try:
            await asyncio.wait(
                waits, timeout=max(0.0, deadline - time.monotonic()), return_when="FIRST_COMPLETED"
            )
        finally:
            if stopped is not None:
                stopped.cancel()
        if not future.done():
            label = self.checks[0][0] if len(self.checks) == 1 else "the pause checks"
            return f"{label} did not answer in {timeout:g} s"
        self.pending = None
        return future.result()

    def _run_checks(self) -> str | None:
        for label, check in self.checks:
            try:
                reason = check()
            except RotatorError:
                raise
            except Exception as exc:
                # Its class only, as for a generator: the message may hold a value.
                raise RotatorError(
                    f"{label} raised {type(exc).__name__} (message withheld: it may hold a "
                    "secret; call it in `manage.py shell` to see it); fix it first"
                ) from None
            if reason is None or reason == "":
                continue
            if not isinstance(reason, str):
                raise RotatorError(
                    f"{label} returned a value of type {type(reason).__name__} (withheld); it "
                    "must return None or the reason to pause as a string"
                )
            return reason
        return None

    def _show(self, throttled: bool | None = None) -> None:
        if throttled is not None:
            self.throttled = throttled
        if self.paused is not None:
            text: str | None = f"paused: {self.paused}"
        elif self.throttled and self.max_rate:
            text = f"throttled: --max-rate {_number(self.max_rate)} rows/s"
        else:
            text = None
        if text != self.shown and self.status is not None:
            self.status(text)
        self.shown = text
