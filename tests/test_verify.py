"""--verify proves, from fingerprints taken at planning, that no row holds a pre-rotation value."""

from __future__ import annotations

import pytest
from django.core.management import CommandError
from django.db import connection

from rotator.models import Fingerprint, Run
from rotator.service import fingerprints
from tests.conftest import fill, run
from tests.support import Stop, fail_from_batch, rotate_directly, token_target, tokens
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


def test_planning_fingerprints_every_row_by_key_never_the_value():
    fill(300)
    before = tokens()
    run("regenerate_token_async", "--fingerprints")
    prints = dict(Fingerprint.objects.values_list("key", "digest"))
    assert set(prints) == {str(pk) for pk in before}
    assert {len(bytes(d)) for d in prints.values()} == {8}
    for pk, token in before.items():
        assert bytes(prints[str(pk)]) not in token.bytes  # a hash, not the value
        assert bytes(prints[str(pk)]) == fingerprints_of(token)


def fingerprints_of(value: object) -> bytes:
    import hashlib

    return hashlib.sha256(str(value).encode()).digest()[:8]


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
        "tickets.Ticket.token has no run to verify; rotate it with --fingerprints first "
        "(the pre-rotation values are fingerprinted when the run is planned)"
    )


def test_fingerprints_go_with_their_run():
    fill(100)
    run("regenerate_token_async", "--fingerprints")
    assert Fingerprint.objects.count() == 100
    Run.objects.all().delete()
    assert Fingerprint.objects.count() == 0


def test_recording_twice_or_after_the_run_began_records_nothing():
    fill(100)
    stopped = interrupted(batch_size=10, committed=1)
    assert Fingerprint.objects.filter(run=stopped).count() == 100
    assert fingerprints.record(token_target(), stopped) == 0
    Fingerprint.objects.all().delete()
    assert fingerprints.record(token_target(), stopped) == 0  # its values changed already
    assert Fingerprint.objects.count() == 0


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


@pytest.mark.postgresql
def test_fingerprints_are_computed_on_the_server_in_one_statement():
    from django.test.utils import CaptureQueriesContext

    fill(100)
    from django.db import connections

    from rotator.sql import builder_for
    from rotator.store.lifecycle import plan

    target = token_target()
    new, _ = plan(target, builder_for(connections["default"]), 4, {})
    with CaptureQueriesContext(connection) as queries:
        assert fingerprints.record(target, new) == 100
    inserts = [q["sql"] for q in queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 1 and "sha256(" in inserts[0] and "SELECT" in inserts[0]


def test_runs_are_not_fingerprinted_unless_asked():
    fill(50)
    run("regenerate_token_async")
    assert Fingerprint.objects.count() == 0
    out, refused = refused_verify()
    assert str(refused) == (
        f"run {Run.objects.get().pk} of tickets.Ticket.token has no fingerprints (it was "
        "planned without --fingerprints); --leaked FILE checks a dump without them, or rotate "
        "again with --restart --fingerprints"
    )
