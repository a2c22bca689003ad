"""A run is finished only when the table says so: the check, the sweep and the settle time.

Django's ``Model.save()`` writes every column, so a request that loaded a row
before its batch and saves after it writes the leaked value back; the
checkpoints cannot see that. When every shard is done, the table is checked
against the run's fingerprints (``fingerprints.stale_keys``); rows found are
rotated again (a sweep, in batch transactions), and the table is checked
again, until a check finds none. The last check waits until ``--settle``
seconds have passed since the last batch or sweep: that bounds how long an
application may hold an instance loaded before its batch and still have its
save caught. A save later than that is not (the README says so).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.errors import ExitStatus, Interrupted, RotatorError
from rotator.models import Run
from rotator.service.checking import CheckEvents, CheckStopper, NoCheckEvents
from rotator.service.fingerprints import CHECK_LIMIT, stale_keys
from rotator.sql import Builder
from rotator.store import lifecycle
from rotator.target import Target
from rotator.workers.batch import Job, sweep_batch
from rotator.workers.retries import Retries

T = TypeVar("T")

#: What the final check says it does, in its progress.
CHECKING = "comparing with the run's fingerprints"
#: Sweeps before the command gives up for now (the run stays active; run it again).
MAX_SWEEPS = 10
#: Keys of one sweep transaction.
SWEEP_BATCH = 1_000
#: The default --settle, in seconds: longer than an ordinary web request or job.
SETTLE_SECONDS = 30.0


def default_settle() -> float:
    """--settle's default: settings.ROTATOR_SETTLE_SECONDS, else SETTLE_SECONDS."""
    return float(getattr(settings, "ROTATOR_SETTLE_SECONDS", SETTLE_SECONDS))


@dataclass(frozen=True)
class Finish:
    finished: bool
    #: Rows found holding a pre-rotation value after their batch, and rotated again.
    swept: int = 0
    #: Whether a check of the table proved the run (None: no fingerprints to check with).
    verified: bool | None = None


class Sleeper:
    """Waits that stop when ``stopped()`` says so (the service's Stopper); ``check``,
    where the caller can be stopped meanwhile, cancels a check's statement on a stop."""

    def __init__(self, stopped: Callable[[], bool], check: CheckStopper | None = None) -> None:
        self.stopped = stopped
        self.check = check

    def cancelling(self, connection: BaseDatabaseWrapper, builder: Builder) -> Any:
        """While a check's statement runs on ``connection``: a stop cancels it."""
        return self.check.bound(connection, builder) if self.check else contextlib.nullcontext()

    def sleep(self, seconds: float) -> bool:
        """Sleep; False if stopped meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.stopped():
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(0.2, left))
        return False


def check_events(events: object) -> CheckEvents:
    """The rotation's Events as the final check's, where they listen (``check_step``)."""
    return events if isinstance(events, CheckEvents) else NoCheckEvents()


def finish_verified(
    target: Target,
    run: Run,
    job: Job,
    settle: float,
    note: Callable[[str], None],
    sleeper: Sleeper,
    stop_status: Callable[[], tuple[str, ExitStatus]],
    events: CheckEvents | None = None,
) -> Finish:
    """Finish ``run`` (every shard done) once a check finds no pre-rotation value left;
    ``events`` hears each check begin and end."""
    events = events or NoCheckEvents()
    if job.proof is None:
        return Finish(lifecycle.finish(run))
    if not lifecycle.all_done(run):
        return Finish(False)
    quiet_since = time.monotonic() - lifecycle.seconds_since_last_batch(run)
    passing = _passing(job, sleeper, lambda: _stopped(target, run, stop_status()))
    sweeps = swept = 0
    waited = False
    while True:
        if sleeper.stopped():  # a stop before the statement began has nothing to cancel
            raise _stopped(target, run, stop_status())
        # Statistics once: the fingerprint table was empty when the run began.
        began = time.monotonic()
        events.check_step(0, 1, CHECKING, 0.0, 0.0)
        try:
            # The check reads every row (minutes on a large table): a stop cancels it.
            with sleeper.cancelling(connections[target.alias], job.builder):
                keys = passing(stale_keys, target, run, CHECK_LIMIT, not (sweeps or waited))
        finally:
            events.check_step(1, 1, "", time.monotonic() - began, 1.0)
        if keys:
            if sweeps == MAX_SWEEPS:
                raise _unverified(target, run, len(keys), sweeps)
            sweeps += 1
            note(
                f"Check: {len(keys):,} rows of {target.label} hold a pre-rotation value again "
                "(saved by the application from an instance loaded before their batch); "
                "rotating them again."
            )
            for start in range(0, len(keys), SWEEP_BATCH):
                if sleeper.stopped():
                    raise _stopped(target, run, stop_status())
                done = _sweep(passing, job, keys[start : start + SWEEP_BATCH], sleeper.stopped)
                passing(lifecycle.count_swept, run, done)
                swept += done
            quiet_since = time.monotonic()
            continue
        wait = settle - (time.monotonic() - quiet_since)
        if wait <= 0:
            break
        if not waited and wait >= 1:
            note(
                f"Every row is rotated; checking again in {wait:.0f} s (--settle {settle:g}), "
                "for saves of instances loaded before their batch."
            )
            waited = True
        if not sleeper.sleep(wait):
            raise _stopped(target, run, stop_status())
    finished = passing(lifecycle.finish, run)
    return Finish(finished, swept, finished)


def _sweep(
    passing: Callable[..., Any], job: Job, keys: list[str], stopped: Callable[[], bool]
) -> int:
    """Rotate ``keys`` again, as a batch takes its window: the rows no one holds at once;
    then, while the application holds some, the first of them waited for alone (holding
    no other row), and the rest that are free by then; return the rows rotated."""
    done, held = passing(sweep_batch, job, keys)
    while held and not stopped():
        first, _ = passing(sweep_batch, job, held[:1], True)
        done += first
        more, held = passing(sweep_batch, job, held[1:]) if held[1:] else (0, [])
        done += more
    return done


def _passing(
    job: Job, sleeper: Sleeper, stopped: Callable[[], BaseException]
) -> Callable[..., Any]:
    """``passing(fn, *args)``: call ``fn`` (one transaction), again after a passing fault,
    as a worker retries its batch: the application's row lock, a deadlock, SQLite's
    single writer busy. A connection fault is the caller's (``_reconnecting`` runs the
    whole check again); a stop during a pause raises ``stopped()``."""

    def passing(fn: Callable[..., T], *args: Any) -> T:
        retries = Retries()
        while True:
            try:
                return fn(*args)
            except DatabaseError as exc:
                if sleeper.stopped():  # cancelled by the stop (Sleeper.cancelling)
                    raise stopped() from exc
                fault = job.builder.fault(exc)
                if fault is None or fault.kind not in lifecycle.RETRIED:
                    raise
                pause = retries.record(fault)
                if retries.exhausted:
                    raise
                if not sleeper.sleep(pause):
                    raise stopped() from exc

    return passing


def _unverified(target: Target, run: Run, left: int, sweeps: int) -> RotatorError:
    error = RotatorError(
        f"{left:,} row{'s' if left != 1 else ''} of {target.label} still "
        f"hold{'s' if left == 1 else ''} a pre-rotation value after {sweeps} "
        f"sweeps: the application keeps saving instances loaded before they were rotated; "
        f"run {run.pk} stays unfinished: run the same command again to sweep them (see their "
        "keys with --verify -v 2)"
    )
    error.status = ExitStatus.UNVERIFIED
    return error


def unfinished(target: Target, run: Run) -> str:
    """What a stop during the final check leaves, for "Interrupted by ...: "."""
    return (
        f"every row of {target.label} is rotated, but the check that finishes run {run.pk} "
        "is not done; run the same command again to finish it"
    )


def _stopped(target: Target, run: Run, why: tuple[str, ExitStatus]) -> Interrupted:
    reason, status = why
    return Interrupted(f"Interrupted by {reason}: {unfinished(target, run)}", status)
