"""The fingerprint key on PostgreSQL: sent once per worker connection, never per batch,
and gone from the session when the worker is done (Django's pool hands that session
to its next user). Behind a transaction pooler it is sent in every batch and dropped
at commit (tests/test_pooler.py)."""

from __future__ import annotations

import threading

import psycopg
import pytest
from django.db import connection, transaction

from rotator.models import Run
from rotator.service import fingerprints
from rotator.sql import builder_for
from rotator.sql.digests import PROOF_TABLE, keyed_digest
from tests.conftest import fill
from tests.support import (
    fingerprints_of,
    rotate_directly,
    rotated_in_sets,
    token_target,
    tokens,
)

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def key_copies(monkeypatch):
    """How many times the key was COPYed to the server."""
    seen = []
    lock = threading.Lock()
    copy = psycopg.Cursor.copy

    def counting(self, statement, *args, **kwargs):
        if PROOF_TABLE in str(statement):
            with lock:
                seen.append(statement)
        return copy(self, statement, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "copy", counting)
    return seen


def key_table_exists() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT to_regclass('pg_temp.{PROOF_TABLE}') IS NOT NULL")
        return bool(cursor.fetchone()[0])


def test_each_worker_sends_the_key_once_not_per_batch(key_copies):
    fill(1_000)
    before = tokens()
    report, _, _ = rotate_directly(workers=2, batch_size=50, verbosity=0)
    assert report.finished
    # 20 batches or more; the key went once per worker connection, and once for the check.
    assert 2 <= len(key_copies) <= 4, key_copies
    key = fingerprints.derive_key(Run.objects.get())
    prints = dict(fingerprints_of())
    assert prints == {str(pk): keyed_digest(key, str(token)) for pk, token in before.items()}


def test_a_batch_keeps_its_fingerprints_in_one_row_of_two_arrays():
    fill(1_000)
    rotated_in_sets(1_000)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM rotator_fingerprintset "
            "WHERE cardinality(keys) <> size OR cardinality(digests) <> size"
        )
        assert cursor.fetchone() == (0,)
    assert len(fingerprints_of()) == 1_000


def test_a_session_that_lost_its_key_table_gets_it_again():
    builder = builder_for(connection)
    target = token_target()
    key = "ab" * 32
    with transaction.atomic():
        builder.load_proof_key(connection, target, key, batches=True)
    assert key_table_exists()
    with connection.cursor() as cursor:
        cursor.execute("DISCARD ALL")  # what a pool's reset may do
    assert not key_table_exists()
    with transaction.atomic():
        builder.load_proof_key(connection, target, key, batches=True)
        assert key_table_exists()
    builder.end_session(connection)
    assert not key_table_exists()


def test_a_check_never_finds_a_batch_key_left_in_its_session():
    builder = builder_for(connection)
    target = token_target()
    with transaction.atomic():
        builder.load_proof_key(connection, target, "cd" * 32, batches=True)
    # The check's key lives for its transaction only, and replaces the session's.
    with transaction.atomic():
        builder.load_proof_key(connection, target, "ef" * 32)
    assert not key_table_exists()
    with transaction.atomic():
        builder.load_proof_key(connection, target, "cd" * 32, batches=True)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT k FROM pg_temp.{PROOF_TABLE}")
            assert cursor.fetchall() == [("cd" * 32,)]
    builder.end_session(connection)
