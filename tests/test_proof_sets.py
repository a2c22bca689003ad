"""The proof on MariaDB: one FingerprintSet row per batch (its keys as a JSON array, its
digests as hex digits in one string), read back through two views, and Fingerprint rows
written before migration 0011 read back in the same form."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from rotator.errors import RotatorError
from rotator.models import Fingerprint, FingerprintSet, Run
from rotator.service import fingerprints
from rotator.sql.digests import PROOF_DIGESTS, PROOF_HEX, keyed_digest
from rotator.sql.mysql import proof
from tests import live_mysql
from tests.conftest import fill
from tests.support import (
    fingerprints_of,
    rotate_directly,
    rotated_in_sets,
    token_target,
    tokens,
)

pytestmark = [pytest.mark.mysql, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def mariadb():
    if not connection.mysql_is_mariadb:
        pytest.skip("MySQL keeps a Fingerprint row per row")


def run_id() -> int:
    return Run.objects.get().pk


def digests_of(run_id: int) -> list[bytes | None]:
    """What the checks compare with: the digests view, as hex digits."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT digest FROM {PROOF_DIGESTS} WHERE run_id = %s", [run_id])
        return [digest for (digest,) in cursor.fetchall()]


def test_a_batch_keeps_its_fingerprints_in_one_row_of_keys_and_hex_digests():
    fill(1_000)
    before = tokens()
    rotated_in_sets(1_000)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM rotator_fingerprintset "
            f"WHERE JSON_LENGTH(`keys`) <> size OR LENGTH(digests) <> {PROOF_HEX} * size"
        )
        assert cursor.fetchone() == (0,)
    key = fingerprints.derive_key(Run.objects.get())
    # Every key with its own row's digest: the two lists line up.
    assert dict(fingerprints_of()) == {
        str(pk): keyed_digest(key, str(token)) for pk, token in before.items()
    }
    run_id = Run.objects.get().pk
    assert sorted(digests_of(run_id)) == sorted(
        f"{keyed_digest(key, str(token)):0{PROOF_HEX}x}".encode() for token in before.values()
    )


def test_fingerprint_rows_written_before_the_sets_read_back_the_same():
    fill(10)
    before = tokens()
    run_id = Run.objects.create(
        model="tickets.Ticket", field="token", database="default", total_rows=12
    ).pk
    key = "cd" * 32
    Fingerprint.objects.bulk_create(
        Fingerprint(run_id=run_id, key=str(pk), digest=keyed_digest(key, str(token)))
        for pk, token in before.items()
    )
    Fingerprint.objects.create(run_id=run_id, key="small", digest=0x123)
    Fingerprint.objects.create(run_id=run_id, key="null", digest=None)
    assert dict(fingerprints.recorded(token_target(), run_id)) == {
        **{str(pk): keyed_digest(key, str(token)) for pk, token in before.items()},
        "small": 0x123,
        "null": None,
    }
    # As the sets keep them: PROOF_HEX hex digits, leading zeros kept, NULL kept NULL.
    assert sorted(digests_of(run_id), key=lambda d: d or b"") == [
        None,
        b"000000000000123",
        *sorted(f"{keyed_digest(key, str(t)):0{PROOF_HEX}x}".encode() for t in before.values()),
    ]


@pytest.mark.parametrize("sql_mode", ["STRICT_TRANS_TABLES", ""], ids=["strict", "lenient"])
def test_a_set_cut_short_by_the_server_is_refused_and_its_batch_rolled_back(monkeypatch, sql_mode):
    fill(200)
    before = tokens()
    # A server whose group_concat_max_len a window's digests outgrow (50 x 15 bytes); a
    # lenient one stores '' for the NULL that refuses the set, with a warning.
    session = f"SET SESSION group_concat_max_len = 200, sql_mode = '{sql_mode}'"
    monkeypatch.setattr(proof, "SESSION_SQL", session)
    with pytest.raises(RotatorError) as refused:
        rotate_directly(workers=1, batch_size=50, verbosity=0, settle=0)
    assert str(refused.value) == (
        "a batch's fingerprints did not fit in one row (the server's group_concat_max_len "
        "or max_allowed_packet): pass a smaller --batch-size; 0/200 rows of "
        f"tickets.Ticket.token rotated; run the same command again to resume run {run_id()}"
    )
    assert not FingerprintSet.objects.exists()
    assert tokens() == before


def test_a_window_cut_short_by_a_row_the_application_holds_fingerprints_only_its_rows():
    fill(40)
    before = tokens()
    held = sorted(before)[11]
    app = live_mysql.connect()
    live_mysql.execute(app, "BEGIN")
    live_mysql.execute(app, "SELECT 1 FROM tickets_ticket WHERE id = %s FOR UPDATE", [held])
    # The first window (20 rows) ends before the held row; the next starts there and
    # waits for it, until the application commits.
    release = threading.Timer(0.5, app.commit)
    release.start()
    try:
        report, _, _ = rotate_directly(workers=1, shards=1, batch_size=20, verbosity=0, settle=0)
    finally:
        release.join()
        app.close()
    assert report.finished and report.verified
    # Each row once: the set holds the rows its batch rotated, not its whole first window.
    assert list(FingerprintSet.objects.order_by("pk").values_list("size", flat=True))[0] == 11
    prints = fingerprints_of()
    assert len(prints) == 40
    key = fingerprints.derive_key(Run.objects.get())
    assert dict(prints) == {str(pk): keyed_digest(key, str(t)) for pk, t in before.items()}
