"""A run is finished only when the table says so: the application's full-row saves of
instances loaded before their batch put leaked values back, and the run finds and rotates
them again before it exits 0."""

from __future__ import annotations

import re
import threading
import time
import uuid

import pytest
from django.db import DatabaseError, connection, transaction

from rotator.errors import ExitStatus, RotatorError
from rotator.models import Run
from rotator.service import finishing
from tests.conftest import fill
from tests.support import rotate_directly, tokens
from tickets.models import Ticket

pytestmark = pytest.mark.django_db(transaction=True)


class Application:
    """Requests that loaded tickets before the run and save each whole row (Model.save())
    as soon as the rotator has given it a new value: the old token is written back."""

    def __init__(self, held: list[Ticket], threads: int = 4) -> None:
        self.held = held
        self.saved: list[int] = []
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._serve, args=(held[i::threads],), daemon=True)
            for i in range(threads)
        ]

    def __enter__(self) -> Application:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _serve(self, mine: list[Ticket]) -> None:
        waiting = {ticket.pk: ticket for ticket in mine}
        try:
            while waiting and not self.done.is_set():
                now = dict(Ticket.objects.filter(pk__in=waiting).values_list("pk", "token"))
                for pk, token in now.items():
                    ticket = waiting[pk]
                    if token == ticket.token:
                        continue
                    try:
                        ticket.save()  # rotated meanwhile: the stale instance's whole row
                    except DatabaseError:  # SQLite's single writer is busy: try again
                        continue
                    del waiting[pk]
                    with self.lock:
                        self.saved.append(pk)
                time.sleep(0.02)
        finally:
            connection.close()


def stale(before: dict[int, uuid.UUID]) -> list[int]:
    after = tokens()
    return sorted(pk for pk, token in before.items() if after.get(pk) == token)


def test_saves_of_instances_loaded_before_their_batch_are_rotated_again_before_exit_0():
    fill(1_000)
    before = tokens()
    held = list(Ticket.objects.order_by("pk")[::50])  # 20 requests holding an instance
    with Application(held, threads=2) as app:
        report, out, _ = rotate_directly(workers=4, batch_size=50, verbosity=1, settle=3.0)
    assert len(app.saved) == 20  # every request did write its leaked token back
    assert stale(before) == []
    assert report.finished and report.verified
    assert report.swept == 20
    assert (
        "Verified: no planned row of tickets.Ticket.token holds its pre-rotation value "
        "(20 rows written back by the application after their batch were rotated again)."
    ) in out.splitlines()
    assert Run.objects.get().options["swept"] == 20


def test_the_final_check_waits_the_settle_time_after_the_last_batch():
    fill(200)
    started = time.monotonic()
    report, out, _ = rotate_directly(workers=1, batch_size=50, verbosity=1, settle=5.0)
    assert time.monotonic() - started >= 5.0
    assert report.finished and report.verified
    assert re.search(
        r"^Every row is rotated; checking again in \d s \(--settle 5\), for saves of "
        r"instances loaded before their batch\.$",
        out,
        re.M,
    )


def test_no_fingerprints_finishes_without_the_check_and_says_so():
    fill(100)
    report, out, _ = rotate_directly(workers=1, verbosity=1, fingerprints=False, settle=60.0)
    assert report.finished and report.verified is None
    assert (
        f"Not verified: run {report.run_id} has no fingerprints (--no-fingerprints); "
        "--leaked FILE checks a dump."
    ) in out.splitlines()


def test_a_row_written_back_after_every_sweep_leaves_the_run_unfinished_with_status_5(
    monkeypatch,
):
    fill(100)
    before = tokens()
    victim = sorted(before)[10]
    monkeypatch.setattr(finishing, "MAX_SWEEPS", 2)
    real = finishing.sweep_batch

    def sweep_then_write_back(job, keys, wait=False):  # an application saving it back each time
        swept = real(job, keys, wait)
        Ticket.objects.filter(pk=victim).update(token=before[victim])
        return swept

    monkeypatch.setattr(finishing, "sweep_batch", sweep_then_write_back)

    def write_back(lease):  # in the batch's transaction, after its UPDATE
        Ticket.objects.filter(pk=victim).update(token=before[victim])

    with pytest.raises(RotatorError) as refused:
        rotate_directly(workers=1, batch_size=1_000, verbosity=0, batch_hook=write_back, settle=0)
    assert refused.value.status == ExitStatus.UNVERIFIED
    assert str(refused.value) == (
        "1 row of tickets.Ticket.token still holds a pre-rotation value after 2 sweeps: the "
        "application keeps saving instances loaded before they were rotated; run "
        f"{Run.objects.get().pk} stays unfinished: run the same command again to sweep them "
        "(see their keys with --verify -v 2)"
    )
    assert Run.objects.get().state == Run.State.ACTIVE
    assert stale(before) == [victim]


@pytest.mark.parametrize(
    "vendor",
    [
        pytest.param("postgresql", marks=pytest.mark.postgresql),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def test_a_written_back_row_the_application_keeps_locked_is_waited_out_by_the_sweep(vendor):
    fill(200)
    before = tokens()
    held = Ticket.objects.order_by("pk").first()
    holding = threading.Event()

    def save_back_then_hold() -> None:  # a request that saves, then locks the row a while
        try:
            while Ticket.objects.get(pk=held.pk).token == held.token:
                time.sleep(0.02)
            held.save()
            with transaction.atomic():
                Ticket.objects.select_for_update().get(pk=held.pk)
                holding.set()
                time.sleep(4.0)  # past the sweep's lock timeout, many times over
        finally:
            connection.close()

    request = threading.Thread(target=save_back_then_hold, daemon=True)
    request.start()
    report, _, _ = rotate_directly(
        workers=1, batch_size=50, verbosity=0, settle=1.0, lock_timeout=0.3
    )
    request.join(timeout=30)
    assert holding.is_set()
    assert report.finished and report.verified
    assert report.swept == 1
    assert stale(before) == []


@pytest.mark.parametrize(
    "vendor",
    [
        pytest.param("postgresql", marks=pytest.mark.postgresql),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def test_a_sweep_never_holds_a_written_back_row_while_it_waits_for_one_the_application_holds(
    vendor,
):
    fill(200)
    before = tokens()
    free, held = sorted(before)[0], sorted(before)[150]  # the sweep takes keys in order
    holding, released = threading.Event(), threading.Event()
    waits: list[float] = []
    written = []

    def write_back_free(lease):  # in the first batch's transaction, after its UPDATE
        if not written:
            Ticket.objects.filter(pk=free).update(token=before[free])
            written.append(free)

    def save_back_then_hold() -> None:  # a request that saves, then locks the row a while
        try:
            while Ticket.objects.get(pk=held).token == before[held]:
                time.sleep(0.02)
            Ticket.objects.filter(pk=held).update(token=before[held])
            with transaction.atomic():
                Ticket.objects.select_for_update().filter(pk=held).exists()
                holding.set()
                time.sleep(4.0)  # past the sweep's lock timeout
        finally:
            released.set()
            connection.close()

    def touch_the_other() -> None:  # another request, on the other written-back row
        try:
            holding.wait(30)
            while not released.is_set():
                began = time.monotonic()
                with transaction.atomic():
                    Ticket.objects.select_for_update().filter(pk=free).exists()
                waits.append(time.monotonic() - began)
                time.sleep(0.01)
        finally:
            connection.close()

    requests = [
        threading.Thread(target=t, daemon=True) for t in (save_back_then_hold, touch_the_other)
    ]
    for request in requests:
        request.start()
    report, _, _ = rotate_directly(
        workers=1,
        batch_size=50,
        verbosity=0,
        settle=1.0,
        lock_timeout=2.0,
        batch_hook=write_back_free,
    )
    for request in requests:
        request.join(timeout=30)
    assert holding.is_set() and waits
    assert report.finished and report.verified
    assert report.swept == 2
    assert stale(before) == []
    # Not the sweep's 2 s wait for the held row: the free one was swept and committed first.
    assert max(waits) < 0.5, f"a request waited {max(waits):.2f} s on a row the sweep held"
