"""Helpers for tests that call the engine directly (``rotator.service.rotation.rotate``)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from io import StringIO

import pytest
from django.core.management.base import OutputWrapper

from rotator.command.console import rotate_and_report
from rotator.models import Run, Shard
from rotator.service import fingerprints
from rotator.service.options import Options
from rotator.service.rotation import Report
from rotator.store.claims import Lease
from rotator.target import Target, resolve_target
from tickets.models import Ticket

Hook = Callable[[Lease], None]


def token_target() -> Target:
    return resolve_target("tickets.Ticket.token", "default")


def rotate_directly(**options: object) -> tuple[Report, str, str]:
    """``rotate()`` on tickets.Ticket.token, printed as the command prints it, with captured
    (report, stdout, stderr)."""
    out, err = StringIO(), StringIO()
    report = rotate_and_report(
        token_target(), Options(**options), OutputWrapper(out), OutputWrapper(err)
    )
    return report, out.getvalue(), err.getvalue()


class Stop(Exception):
    """Raised by a batch hook to stop a run part-way, as a crash would."""


def fail_from_batch(n: int) -> Hook:
    """A batch hook that lets the first n-1 batches commit and fails every later one."""
    lock = threading.Lock()
    seen = 0

    def hook(lease: Lease) -> None:
        nonlocal seen
        with lock:
            seen += 1
            if seen >= n:
                raise Stop(f"stopped at batch {seen}")

    return hook


def interrupted_run(*, workers: int = 2, batch_size: int = 25, committed: int = 2) -> Run:
    """Start a run and stop it after ``committed`` batches; return the unfinished run."""
    with pytest.raises(Stop):
        rotate_directly(
            workers=workers,
            batch_size=batch_size,
            verbosity=0,
            batch_hook=fail_from_batch(committed + 1),
        )
    return Run.objects.get(state=Run.State.ACTIVE)


def record_batches(sizes: list[tuple[int, int]]) -> Hook:
    """A batch hook that appends (shard index, rows in this batch) to ``sizes``."""
    lock = threading.Lock()

    def hook(lease: Lease) -> None:
        # Inside the batch's transaction: the shard row already holds this
        # batch's checkpoint, the lease still holds the previous one.
        shard = Shard.objects.get(pk=lease.shard_id)
        with lock:
            sizes.append((lease.index, shard.rows_done - lease.rows_done))

    return hook


def tokens() -> dict[int, uuid.UUID]:
    return dict(Ticket.objects.values_list("pk", "token"))


def add_tickets(*ids: int) -> None:
    """Tickets with explicit primary keys (sparse or skewed key spaces)."""
    Ticket.objects.bulk_create(Ticket(pk=pk, subject=f"ticket {pk}") for pk in ids)


def rotated_in_sets(rows: int) -> None:
    """Rotate ``rows`` tickets in batches of 50 (20 or more batches) and check that each
    batch kept its fingerprints in one FingerprintSet row, none in a row of its own."""
    from rotator.models import Fingerprint, FingerprintSet

    report, _, _ = rotate_directly(workers=2, batch_size=50, verbosity=0, settle=0)
    assert report.finished and report.verified
    sets = list(FingerprintSet.objects.values_list("size", flat=True))
    assert len(sets) < rows / 10 and sum(sets) == rows
    assert not Fingerprint.objects.exists()


def fingerprints_of(run: Run | None = None) -> list[tuple[str, int | None]]:
    """(key, digest) of the fingerprints of ``run`` (of every run: None), as the checks
    read them (on PostgreSQL one batch's are one FingerprintSet row)."""
    from rotator.models import Fingerprint, FingerprintSet

    runs = (
        [run.pk]
        if run is not None
        else sorted(
            {*Fingerprint.objects.values_list("run_id", flat=True)}
            | {*FingerprintSet.objects.values_list("run_id", flat=True)}
        )
    )
    return [row for pk in runs for row in fingerprints.recorded(token_target(), pk)]
