"""--verify proves, from fingerprints taken at planning, that no row holds a pre-rotation value."""

from __future__ import annotations

import hashlib

import pytest
from django.core.management import CommandError
from django.db import connection

from rotator.models import Run
from rotator.service import fingerprints
from rotator.sql.digests import keyed_digest
from tests.conftest import fill, run, vendor
from tests.support import (
    Stop,
    fail_from_batch,
    fingerprints_of,
    rotate_directly,
    token_target,
    tokens,
)
from tests.testapp.models import ApiKey
from tickets.models import Ticket

pytestmark = pytest.mark.django_db(transaction=True)


def interrupted(batch_size: int, committed: int) -> Run:
    """A fingerprinted run stopped after ``committed`` batches of one worker."""
    with pytest.raises(Stop):
        rotate_directly(
            workers=1,
            batch_size=batch_size,
            verbosity=0,
            fingerprints=True,
            batch_hook=fail_from_batch(committed + 1),
        )
    return Run.objects.get(state=Run.State.ACTIVE)


def verify(*args: str) -> tuple[str, str]:
    return run("regenerate_token_async", "--verify", *args)


def refused_verify(*args: str) -> tuple[str, CommandError]:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("regenerate_token_async", "--verify", *args, stdout=out)
    return out.getvalue(), refused.value


def test_each_batch_fingerprints_its_rows_by_key_keyed_never_the_value():
    fill(300)
    before = tokens()
    run("regenerate_token_async")  # on by default
    planned = Run.objects.get()
    key = fingerprints.derive_key(planned)
    prints = dict(fingerprints_of())
    assert set(prints) == {str(pk) for pk in before}
    for pk, token in before.items():
        # MySQL stores a UUIDField as char(32); MariaDB and PostgreSQL as uuid.
        native = Ticket._meta.get_field("token").db_type(connection) == "uuid"
        text = token.hex if vendor() == "mysql" and not native else str(token)
        assert prints[str(pk)] == keyed_digest(key, text)
        # Not the unkeyed hash a copy of the database could be searched with.
        assert prints[str(pk)] != int(hashlib.sha256(text.encode()).hexdigest()[:15], 16)
    assert key not in str(list(Run.objects.values()))


def test_a_finished_run_verifies_with_zero_rows_left():
    fill(1_000)
    run("regenerate_token_async", "--fingerprints", "--workers", "2")
    out, _ = verify()
    lines = out.splitlines()
    run_id = Run.objects.get().pk
    assert lines[0].startswith(
        f"Verifying tickets.Ticket.token against the 1,000 fingerprints of run {run_id} (finished"
    )
    assert lines[1:] == [
        "0 of 1,000 rows still hold a pre-rotation value",
        "0 rows planned and since deleted",
        "0 rows born after the plan (never held a planned value)",
        "0 rows share a value with another row",
        "0 rows are NULL",
    ]


def test_one_row_put_back_to_its_old_value_fails_verification_and_is_counted():
    fill(500)
    before = tokens()
    run("regenerate_token_async", "--fingerprints")
    victim = sorted(before)[123]
    Ticket.objects.filter(pk=victim).update(token=before[victim])
    out, refused = refused_verify()
    assert "1 of 500 rows still hold a pre-rotation value" in out.splitlines()
    assert refused.returncode == 1
    assert str(refused) == (
        "1 of 500 rows of tickets.Ticket.token still hold a pre-rotation value; run python "
        "manage.py regenerate_token_async --restart to rotate every row again, then verify again"
    )
    assert str(before[victim]) not in out + str(refused)
    assert str(before[victim].hex) not in out + str(refused)


def test_a_row_given_another_rows_old_value_still_counts():
    fill(50)
    before = tokens()
    run("regenerate_token_async", "--fingerprints")
    first, second = sorted(before)[:2]
    Ticket.objects.filter(pk=second).update(token=before[first])
    out, refused = refused_verify()
    assert "1 of 50 rows still hold a pre-rotation value" in out


def test_verbosity_2_prints_the_primary_keys_but_no_value():
    fill(200)
    before = tokens()
    run("regenerate_token_async", "--fingerprints")
    stale = sorted(before)[7], sorted(before)[42]
    for pk in stale:
        Ticket.objects.filter(pk=pk).update(token=before[pk])
    out, refused = refused_verify("-v", "2")
    assert f"Primary keys still holding a pre-rotation value: {stale[0]}, {stale[1]}" in out
    assert not any(str(before[pk]) in out for pk in stale)


def test_deleted_and_newborn_rows_are_reported_apart():
    fill(100)
    run("regenerate_token_async", "--fingerprints")
    Ticket.objects.filter(pk__in=sorted(tokens())[:3]).delete()
    fill(5)
    out, _ = verify()
    assert "0 of 102 rows still hold a pre-rotation value" in out
    assert "3 rows planned and since deleted" in out
    assert "5 rows born after the plan (never held a planned value)" in out


def test_an_unfinished_run_says_how_far_it_got():
    fill(1_000)
    stopped = interrupted(batch_size=100, committed=2)
    out, refused = refused_verify()
    assert (
        f"Run {stopped.pk} is active, not finished: it rotated 200 of 1,000 planned rows (20.0%)."
        in out.splitlines()
    )
    assert "800 of 1,000 rows still hold a pre-rotation value" in out.splitlines()
    assert str(refused).endswith(
        f"run python manage.py regenerate_token_async to finish run {stopped.pk}, then verify again"
    )


def test_verify_without_a_run_says_what_to_do():
    fill(10)
    out, refused = refused_verify()
    assert str(refused) == (
        "tickets.Ticket.token has no run to verify; rotate it first (each batch fingerprints "
        "the values it replaces)"
    )


def test_fingerprints_go_with_their_run():
    fill(100)
    run("regenerate_token_async", "--fingerprints")
    assert len(fingerprints_of()) == 100
    Run.objects.all().delete()
    assert fingerprints_of() == []


def test_a_batch_fingerprints_only_its_window_and_restart_adds_to_the_first_proof():
    fill(100)
    before = tokens()
    stopped = interrupted(batch_size=10, committed=1)
    assert len(fingerprints_of(stopped)) == 10
    between = tokens()
    first_rotated = sorted(k for k in before if before[k] != between[k])
    assert len(first_rotated) == 10
    run("regenerate_token_async", "--restart", "--yes", "--workers", "2")
    new = Run.objects.get(state=Run.State.FINISHED)
    assert new.options["proof"] == stopped.pk
    assert fingerprints_of(new) == []
    # Every row once, and the 10 the first run rotated once more: the value it gave them.
    proof = fingerprints_of(stopped)
    assert len({key for key, _ in proof}) == 100
    assert len(proof) == 110
    out, _ = verify()
    assert "0 of 100 rows still hold a pre-rotation value" in out.splitlines()
    assert out.splitlines()[0].startswith("Verifying tickets.Ticket.token against the 100 ")
    # A row the first run rotated is caught holding its value from before either run.
    victim, other = first_rotated[3], first_rotated[4]
    Ticket.objects.filter(pk=victim).update(token=before[victim])
    Ticket.objects.filter(pk=other).update(token=between[other])
    out, refused = refused_verify()
    assert "2 of 100 rows still hold a pre-rotation value" in out.splitlines()


def test_string_secrets_under_uuid_keys_verify_too():
    ApiKey.objects.bulk_create(ApiKey() for _ in range(60))
    old = dict(ApiKey.objects.values_list("pk", "key"))
    run("rotate_field", "testapp.ApiKey.key", "--fingerprints", "--workers", "2")
    out, _ = run("rotate_field", "testapp.ApiKey.key", "--verify")
    assert "0 of 60 rows still hold a pre-rotation value" in out
    victim = sorted(old)[5]
    ApiKey.objects.filter(pk=victim).update(key=old[victim])
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    with pytest.raises(CommandError):
        call_command("rotate_field", "testapp.ApiKey.key", "--verify", "-v", "2", stdout=out)
    assert f"Primary keys still holding a pre-rotation value: {victim}" in out.getvalue()
    assert old[victim] not in out.getvalue()


def test_the_key_is_in_no_statement_text_or_parameter():
    from django.test.utils import CaptureQueriesContext

    if vendor() == "sqlite":
        pytest.skip("SQLite has no server log: its key lives in a Python function")
    fill(50)
    run("regenerate_token_async")
    key = fingerprints.derive_key(Run.objects.get())
    with CaptureQueriesContext(connection) as queries:
        verify()
    assert queries.captured_queries
    assert not [q for q in queries.captured_queries if key in q["sql"]]


def test_no_fingerprints_opts_out_and_the_hint_of_verify_works_when_typed():
    fill(50)
    run("regenerate_token_async", "--no-fingerprints")
    assert fingerprints_of() == []
    out, refused = refused_verify()
    assert str(refused) == (
        f"run {Run.objects.get().pk} of tickets.Ticket.token has no fingerprints (it was "
        "planned without fingerprints); --leaked FILE checks a dump without them, or rotate "
        "again with --restart (fingerprints are on by default)"
    )
    run("regenerate_token_async", "--restart")
    out, _ = verify()
    assert "0 of 50 rows still hold a pre-rotation value" in out.splitlines()


def test_verify_with_no_flags_after_a_default_run():
    fill(400)
    run("regenerate_token_async", "--workers", "2")
    out, _ = verify()
    assert out.splitlines()[1] == "0 of 400 rows still hold a pre-rotation value"


@pytest.mark.mysql
def test_verify_of_100k_rows_on_mariadb_is_not_quadratic():
    import time

    from django.db import transaction

    from rotator.sql import builder_for
    from rotator.sql.base import Window
    from rotator.store import lifecycle

    fill(100_000)
    target, builder = token_target(), builder_for(connection)
    planned, _ = lifecycle.plan(target, builder, 4, {"fingerprints": True})
    proof = fingerprints.proof_for(planned)
    assert proof is not None and planned.high_water is not None
    with transaction.atomic():  # every row fingerprinted, none rotated yet
        proof.write(builder, target, Window(None, planned.high_water, 100_000))
    started = time.monotonic()
    out, refused = refused_verify()
    # An unindexed blob made this quadratic: over 10 minutes for 100k rows.
    assert time.monotonic() - started < 60
    assert "100,000 of 100,000 rows still hold a pre-rotation value" in out.splitlines()
