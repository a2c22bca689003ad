"""New values that are already taken: only those rows get other values, boundedly.

The generators below are passed to the command as
``--generator tests.test_collisions.<name>``; ``COLLIDE`` says which
existing tokens they repeat (in turn) and for how many calls. A generator that
repeats one token for ever cannot fill the table, and the value-space check
refuses it before the run (tests/test_value_space.py); values that are all
taken but distinct (the table's own tokens, in turn) pass that check and make
the batches' bounded rounds give up.
"""

from __future__ import annotations

import re
import threading
import uuid

import pytest
from django.core.management import CommandError

from rotator.models import Run, Shard
from rotator.workers.batch import MAX_ROUNDS
from tests.conftest import fill, run
from tests.fieldapp.models import ConstrainedKey
from tests.support import rotate_directly, tokens
from tickets.models import Ticket

pytestmark = pytest.mark.django_db(transaction=True)

_lock = threading.Lock()
COLLIDE = {"token": None, "pool": None, "first": 0, "after": 0, "calls": 0}


def colliding() -> uuid.UUID:
    """An existing token for calls ``after+1 .. after+first``, a fresh uuid4 otherwise:
    ``token``, or the tokens of ``pool`` in turn."""
    with _lock:
        COLLIDE["calls"] += 1
        n = COLLIDE["calls"]
    if COLLIDE["after"] < n <= COLLIDE["after"] + COLLIDE["first"]:
        pool = COLLIDE["pool"]
        return pool[(n - COLLIDE["after"]) % len(pool)] if pool else COLLIDE["token"]
    return uuid.uuid4()


@pytest.fixture
def collide():
    """Configure ``colliding``: repeat the token of the last ticket."""

    def configure(*, first: int, after: int = 0, pool: int = 0) -> uuid.UUID:
        """``pool``: repeat the tokens of the last ``pool`` tickets in turn instead."""
        newest = Ticket.objects.order_by("-pk").values_list("token", flat=True)
        last = newest.first()
        taken = list(newest[:pool]) if pool else None
        COLLIDE.update(token=last, pool=taken, first=first, after=after, calls=0)
        return last

    yield configure
    COLLIDE.update(token=None, pool=None, first=0, after=0, calls=0)


GENERATOR = "tests.test_collisions.colliding"


def test_a_row_whose_new_value_is_taken_gets_another_and_the_run_completes(collide):
    fill(40)
    before = tokens()
    collide(first=3)
    # One row a batch: the first row's first three new values are taken.
    out, err = run(
        "regenerate_token_async",
        "--workers=1",
        "--shards=1",
        "--batch-size=1",
        f"--generator={GENERATOR}",
    )
    after = tokens()
    assert all(after[pk] != before[pk] for pk in before)
    assert len(set(after.values())) == len(after)
    # 40 one-row batches, one that finds the end of the shard, and three more values.
    assert COLLIDE["calls"] == 40 + 1 + 3
    assert re.search(r"^Rotated 40 rows of tickets\.Ticket\.token .*finished\.$", out, re.M)
    assert Run.objects.get().options["generator"] == GENERATOR


def test_collisions_inside_a_larger_batch_redo_only_those_rows(collide):
    fill(200)
    before = tokens()
    collide(first=5)
    run(
        "regenerate_token_async",
        "--workers=1",
        "--shards=1",
        "--batch-size=60",
        f"--generator={GENERATOR}",
    )
    after = tokens()
    assert all(after[pk] != before[pk] for pk in before)
    assert len(set(after.values())) == len(after)
    # Batches of 60, 60, 60 and the last 20 rows; in the first, four repeats of
    # the taken value are replaced before anything is sent, and the one taken
    # value then gets one more: no batch is done twice.
    assert COLLIDE["calls"] == 60 + 4 + 1 + 60 + 60 + 20
    assert Run.objects.get().state == Run.State.FINISHED


def test_a_generator_whose_values_are_always_taken_fails_after_bounded_rounds(collide):
    fill(100)
    before = tokens()
    collide(first=10**9, pool=100)  # every value is some row's token
    with pytest.raises(CommandError) as failed:
        run(
            "regenerate_token_async",
            "--workers=1",
            "--shards=1",
            "--batch-size=10",
            "--verbosity=3",
            f"--generator={GENERATOR}",
        )
    message = str(failed.value)
    reason = (
        f"10 rows of tickets.Ticket.token found no free value in {MAX_ROUNDS} rounds of "
        f"generator {GENERATOR!r} (shard 0): its values are nearly all taken; use a generator "
        "with a larger value space"
    )
    assert message.startswith(reason), message
    assert "\n" not in message
    assert failed.value.returncode != 0
    assert tokens() == before
    shard = Shard.objects.get()
    assert (shard.rows_done, shard.cursor, shard.state) == (0, None, Shard.State.PENDING)
    errored = Run.objects.get()  # resumable with a better generator
    assert (errored.state, errored.error_class) == (Run.State.ERRORED, "RotatorError")
    assert errored.error_message == reason


def test_only_the_failing_batch_is_rolled_back(collide):
    fill(100)
    before = tokens()
    first_ids = sorted(before)[:20]
    # Two good batches of ten, then nothing but collisions (tokens of rows never reached).
    collide(first=10**9, after=20, pool=50)
    with pytest.raises(CommandError, match="found no free value"):
        run(
            "regenerate_token_async",
            "--workers=1",
            "--shards=1",
            "--batch-size=10",
            f"--generator={GENERATOR}",
        )
    after = tokens()
    assert sorted(pk for pk in before if after[pk] != before[pk]) == first_ids
    shard = Shard.objects.get()
    assert (shard.rows_done, shard.cursor) == (20, str(first_ids[-1]))

    # Resuming without --generator keeps the run's generator; now that it is
    # sound again, the run carries on from the checkpoint.
    COLLIDE.update(first=0, calls=0)
    out, _ = run("regenerate_token_async", "--workers", "1")
    assert "Resuming errored run" in out and "20/100 rows already rotated" in out
    assert COLLIDE["calls"] >= 80
    final = tokens()
    assert {pk: final[pk] for pk in first_ids} == {pk: after[pk] for pk in first_ids}
    assert all(final[pk] != before[pk] for pk in before)
    assert len(set(final.values())) == len(final)


@pytest.mark.postgresql
def test_database_generator_uses_gen_random_uuid():
    fill(2_000)
    before = tokens()
    out, _ = run("regenerate_token_async", "--workers", "4", "--generator", "database")
    after = tokens()
    assert all(after[pk] != before[pk] for pk in before)
    assert len(set(after.values())) == len(after)
    assert all(token.version == 4 for token in after.values())
    assert Run.objects.get().options["generator"] == "database"
    assert "Rotated 2,000 rows" in out


@pytest.mark.sqlite
def test_database_generator_is_refused_on_sqlite():
    fill(10)
    before = tokens()
    with pytest.raises(CommandError) as refused:
        run("regenerate_token_async", "--generator", "database")
    assert str(refused.value) == "--generator database is not available on sqlite"
    assert tokens() == before
    assert not Run.objects.exists()


def test_taken_values_are_reported_at_verbosity_2_without_the_token(collide):
    fill(40)
    token = collide(first=12)
    out, err = run(
        "regenerate_token_async",
        "--workers=1",
        "--shards=1",
        "--batch-size=10",
        f"--generator={GENERATOR}",
        "--verbosity=2",
    )
    assert (
        "worker 0: shard 0: 1 new values were already taken; those rows got other values"
        in [line.split(": ", 1)[1] for line in err.splitlines()]  # after "<time> run <id>: "
    )
    assert str(token) not in out + err and token.hex not in out + err


def test_a_column_unique_only_by_a_constraint_gets_other_values_when_taken(collide):
    """``key`` is unique through Meta.constraints alone (``field.unique`` is False):
    a taken value must still be found before the UPDATE, not raise a unique violation."""
    ConstrainedKey.objects.bulk_create(ConstrainedKey() for _ in range(40))
    before = dict(ConstrainedKey.objects.values_list("pk", "key"))
    COLLIDE.update(token=before[max(before)], first=3, after=0, calls=0)
    out, err = run(
        "rotate_field",
        "fieldapp.ConstrainedKey.key",
        "--workers=1",
        "--shards=1",
        "--batch-size=1",
        f"--generator={GENERATOR}",
        "--verbosity=2",
    )
    after = dict(ConstrainedKey.objects.values_list("pk", "key"))
    assert all(after[pk] != before[pk] for pk in before)
    assert len(set(after.values())) == len(after)
    # As for a unique=True column: 40 one-row batches, the end of the shard, three more.
    assert COLLIDE["calls"] == 40 + 1 + 3
    assert re.search(r"^Rotated 40 rows of fieldapp\.ConstrainedKey\.key .*finished\.$", out, re.M)
    # Probed before the UPDATE, not rolled back after a unique violation.
    lines = [line.split(": ", 1)[1] for line in err.splitlines()]  # after "<time> run <id>: "
    taken = "worker 0: shard 0: 3 new values were already taken; those rows got other values"
    assert lines.count(taken) == 1, err
    assert "batch rolled back" not in err, err


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_uuid4_already_taken_fails_its_batch_which_runs_again(monkeypatch):
    """uuid4 batches do not probe the unique index (122 random bits: a value already taken
    is as likely as two workers drawing one); should one be, the UPDATE's unique index
    refuses it and the batch runs again with other values: every row rotated once."""
    from rotator import generators

    fill(300)
    before = tokens()
    taken = sorted(before.values())[0].bytes
    draws = []
    real = generators.packed_uuid4

    def once_taken(n: int) -> bytes:
        drawn = real(n)
        draws.append(n)
        return taken + drawn[16:] if len(draws) == 1 else drawn

    monkeypatch.setattr(generators, "packed_uuid4", once_taken)
    report, _, _ = rotate_directly(workers=1, batch_size=100, verbosity=0)
    assert report.finished
    after = tokens()
    assert set(after) == set(before)
    assert all(after[pk] != before[pk] for pk in before)
    assert len(set(after.values())) == len(after)
    assert len(draws) > 3  # the refused batch drew again
