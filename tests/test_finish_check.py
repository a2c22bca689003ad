"""The check that finishes a run, on PostgreSQL: it hashes only the rows that a
transaction other than the run's own batches wrote since (``models.Writer``).

These tests reach in on purpose: a row put back to its leaked value by an
"application" transaction is caught; the same row is missed only when that
transaction is recorded as one of the run's writers (which proves the check
trusts the writers, and nothing else); and when the writers span enough
transactions for a 32-bit id to come round, every row is hashed again.
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from rotator.models import Run, Writer
from rotator.service import fingerprints
from rotator.sql.digests import keyed_digest
from tests.conftest import fill, run
from tests.support import fingerprints_of, token_target, tokens
from tickets.models import Ticket

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]


def put_back(pk: int, token: object) -> int:
    """Write ``token`` back into row ``pk`` in a transaction of its own; its xid."""
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("UPDATE tickets_ticket SET token = %s WHERE id = %s", [token, pk])
        cursor.execute("SELECT txid_current()")
        (top,) = cursor.fetchone()
        cursor.execute("COMMIT")
    return int(top)


def test_every_batch_records_the_transactions_that_wrote_its_rows():
    fill(500)
    run("regenerate_token_async", "--workers", "2", "--batch-size", "100")
    finished = Run.objects.get()
    writers = set(Writer.objects.filter(run=finished).values_list("xid", flat=True))
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT xmin::text::bigint FROM tickets_ticket")
        xmins = {x for (x,) in cursor.fetchall()}
    assert xmins <= writers
    assert len(writers) >= 5  # one batch statement at least per 100 rows


def test_the_finishing_check_hashes_the_rows_others_wrote_and_trusts_only_the_writers():
    fill(300)
    before = tokens()
    run("regenerate_token_async", "--workers", "2")
    finished = Run.objects.get()
    target = token_target()
    victim = sorted(before)[7]
    assert fingerprints.stale_keys(target, finished) == []

    top = put_back(victim, before[victim])
    assert fingerprints.stale_keys(target, finished) == [str(victim)]

    # Recorded as one of the run's writers, that transaction's row is trusted: missed.
    Writer.objects.create(run=finished, xid=top % 2**32, top=top)
    assert fingerprints.stale_keys(target, finished) == []
    # Unless the run's writers go back 2^31 transactions: every row is hashed again.
    oldest = Writer.objects.filter(run=finished).order_by("top").first()
    Writer.objects.filter(pk=oldest.pk).update(top=top - 2**31)
    assert fingerprints.stale_keys(target, finished) == [str(victim)]
    # --verify hashes every row, whatever the writers say.
    Writer.objects.filter(pk=oldest.pk).update(top=top)
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("regenerate_token_async", "--verify", stdout=out)
    assert "1 of 300 rows still hold a pre-rotation value" in out.getvalue().splitlines()
    assert Ticket.objects.filter(pk=victim, token=before[victim]).exists()


def test_a_run_after_another_fingerprints_under_its_own_key():
    fill(200)
    run("regenerate_token_async", "--workers", "2")
    run("regenerate_token_async", "--purge", "0")
    between = tokens()
    run("regenerate_token_async", "--restart", "--yes", "--workers", "2")
    second = Run.objects.get()
    assert not second.options.get("proof") or second.options["proof"] == second.pk
    key = fingerprints.derive_key(second)
    prints = dict(fingerprints_of(second))
    assert prints == {str(pk): keyed_digest(key, str(token)) for pk, token in between.items()}


# MariaDB's seals (tests/test_seals.py): what the final check hashes is what no intact
# seal covers.
@pytest.mark.parametrize(
    ("ranges", "gaps"),
    [
        ([], [(None, None)]),
        ([(None, 10), (10, 20), (20, 30)], [(30, None)]),
        ([(20, 30), (None, 10)], [(10, 20), (30, None)]),
        ([(5, 10), (10, 20)], [(None, 5), (20, None)]),
        ([(None, 10), (30, 40), (10, 20)], [(20, 30), (40, None)]),
    ],
)
def test_the_gaps_between_ranges_are_what_no_range_covers(ranges, gaps):
    assert fingerprints.gaps_between(ranges) == gaps
