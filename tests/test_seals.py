"""MariaDB's seals: each batch's keyed checksum of the key range it rotated, so that the
check finishing a run hashes only the rows outside the ranges still as their batch left
them (PostgreSQL reads xmin for that), while --verify hashes every row."""

from __future__ import annotations

from itertools import pairwise

import pytest
from django.db import connection, transaction

from rotator.models import Run, Seal
from rotator.service import fingerprints
from rotator.service.verification import verify
from rotator.sql import builder_for
from rotator.sql.base import Outcome, Window
from tests.conftest import fill
from tests.support import rotate_directly, token_target, tokens

pytestmark = [pytest.mark.mysql, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def mariadb():
    if not connection.mysql_is_mariadb:
        pytest.skip("MySQL keeps a Fingerprint row per row, and no seals")


def rotated(rows: int) -> tuple[Run, dict[int, object]]:
    fill(rows)
    before = tokens()
    report, _, _ = rotate_directly(workers=2, batch_size=50, verbosity=0, settle=0)
    assert report.finished and report.verified
    return Run.objects.get(), before


def put_back(pk: int, value: object) -> None:
    """What a stale save does to the token column: the value before the run, by SQL."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE tickets_ticket SET token = %s WHERE id = %s", [value, pk])


def unsealed(run: Run) -> list[tuple[object, object]]:
    target = token_target()
    with transaction.atomic():
        proof = fingerprints.proof_for(run)
        assert proof is not None
        builder_for(connection).load_proof_key(connection, target, proof.key)
        return fingerprints.unsealed(builder_for(connection), target, run)


def stale(run: Run) -> list[str]:
    return fingerprints.stale_keys(token_target(), run)


def test_the_batches_seals_tile_the_table_from_below_its_first_key_to_its_last():
    run, before = rotated(1_000)
    last = max(before)
    seals = sorted(Seal.objects.filter(run=run).values_list("lo", "hi"), key=lambda s: int(s[1]))
    assert len(seals) >= 20 and seals[0][0] is None and seals[-1][1] == str(last)
    assert all(lo == prev_hi for (_, prev_hi), (lo, _) in pairwise(seals))
    # Nothing written since: only keys above the last one are left to hash (none there).
    assert unsealed(run) == [(last, None)]
    assert stale(run) == []


def test_a_value_written_back_after_its_batch_breaks_its_own_ranges_seal_only():
    run, before = rotated(1_000)
    key = sorted(before)[500]
    put_back(key, before[key])
    (lo, hi), tail = unsealed(run)
    assert lo < key <= hi and hi - lo <= 50 and tail == (max(before), None)
    assert stale(run) == [str(key)]


def test_a_row_born_after_the_run_with_a_leaked_value_is_found():
    run, before = rotated(200)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tickets_ticket (id, token, subject, created_at) "
            "VALUES (%s, %s, 'born', NOW())",
            [max(before) + 100, before[min(before)]],
        )
    assert stale(run) == [str(max(before) + 100)]


def test_the_final_check_trusts_an_intact_seal_where_verify_hashes_every_row():
    run, before = rotated(1_000)
    key = sorted(before)[500]
    put_back(key, before[key])
    # Seal the range again over the value put back: the check takes it as its batch left it.
    target, builder = token_target(), builder_for(connection)
    seal = next(s for s in Seal.objects.filter(run=run) if int(s.lo or 0) < key <= int(s.hi))
    with transaction.atomic():
        builder.load_proof_key(connection, target, fingerprints.derive_key(run))
        (seal.seal,) = builder.seals_now(connection, target, [(seal.lo, seal.hi)])
    seal.save()
    assert stale(run) == []
    assert verify(target).stale == 1


def test_a_range_holding_a_row_its_batch_did_not_see_or_left_to_the_application_is_not_sealed():
    run, before = rotated(100)
    keys = sorted(before)
    window = Window(str(keys[10]), str(keys[20]), 50)  # ten rows: keys[11] to keys[20]
    proof = fingerprints.proof_for(run)
    target, builder = token_target(), builder_for(connection)

    def sealed(outcome: Outcome, whole: bool = True) -> bool:
        Seal.objects.all().delete()
        with transaction.atomic():
            builder.load_proof_key(connection, target, proof.key)
            proof.seal(builder, target, window, outcome, whole=whole)
        return Seal.objects.exists()

    assert sealed(Outcome(seen=10, last=window.hi, rotated=10))
    # Nine seen by the batch: the tenth was inserted into its range while it ran.
    assert not sealed(Outcome(seen=9, last=window.hi, rotated=9))
    # A row the application changed while the batch ran: the batch left it alone.
    assert not sealed(Outcome(seen=10, last=window.hi, rotated=9), whole=False)


def test_a_seal_is_keyed_with_the_runs_key():
    run, _ = rotated(100)
    seal = Seal.objects.filter(run=run).first()
    target, builder = token_target(), builder_for(connection)
    with transaction.atomic():
        builder.load_proof_key(connection, target, "ab" * 32)
        assert builder.seals_now(connection, target, [(seal.lo, seal.hi)]) != [seal.seal]
