"""A shard's owner holds a lease on the database clock, on every database.

Every batch renews it, and a batch commits only while its owner holds it
unexpired: a frozen owner (SIGSTOP, a paused VM) that wakes after its lease
expired is fenced out (``ShardLost``), and a claimant takes its shards, even
where the frozen owner's session, and its advisory lock, are still alive.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.db.models.functions import Now
from django.test import override_settings

from rotator.errors import RotatorError, ShardLost
from rotator.generators import resolve_generator
from rotator.models import Shard
from rotator.sql import builder_for
from rotator.store import claims
from rotator.workers.batch import Job, run_batch
from tests.conftest import fill
from tests.support import interrupted_run, token_target, tokens

pytestmark = pytest.mark.django_db(transaction=True)


def elsewhere(worker: int = 0) -> claims.Owner:
    """An owner in another process on another host: only its lease says it is alive."""
    return claims.Owner(worker=worker, host="another-host", pid=1)


def expire(shard_id: int) -> None:
    Shard.objects.filter(pk=shard_id).update(lease_until=Now() - timedelta(seconds=1))


def job(run_id: int) -> Job:
    target = token_target()
    builder = builder_for(connection)
    connection.ensure_connection()
    builder.prepare_session(connection, target, "rotator test")  # as a worker does
    return Job(target, resolve_generator(target, None), builder, run_id)


def test_a_batch_whose_lease_expired_commits_nothing():
    fill(200)
    run = interrupted_run()
    target, builder = token_target(), builder_for(connection)
    lease = claims.claim(target, builder, run.pk, elsewhere())
    assert lease is not None
    before, shard = tokens(), Shard.objects.get(pk=lease.shard_id)
    expire(lease.shard_id)
    with pytest.raises(ShardLost):
        run_batch(job(run.pk), lease, 25)
    assert tokens() == before
    after = Shard.objects.get(pk=lease.shard_id)
    assert (after.cursor, after.rows_done) == (shard.cursor, shard.rows_done)


def test_every_batch_renews_the_lease():
    fill(200)
    run = interrupted_run()
    target, builder = token_target(), builder_for(connection)
    lease = claims.claim(target, builder, run.pk, elsewhere())
    assert lease is not None
    with override_settings(ROTATOR_LEASE_SECONDS=3600):
        run_batch(job(run.pk), lease, 25)
    long = Shard.objects.filter(pk=lease.shard_id, lease_until__gt=Now() + timedelta(minutes=50))
    assert long.exists()


def test_an_expired_lease_is_taken_over_and_never_renewed():
    fill(200)
    run = interrupted_run()
    target, builder = token_target(), builder_for(connection)
    frozen = claims.claim(target, builder, run.pk, elsewhere(worker=0))
    assert frozen is not None
    running = claims.claim(target, builder, run.pk, elsewhere(worker=1))
    assert running is not None
    # Renewed between batches by its invocation's watcher while unexpired.
    assert claims.renew(target, frozen.owner.session) == 1
    expire(frozen.shard_id)
    # An expired lease stays expired: a claimant may already be at work.
    assert claims.renew(target, frozen.owner.session) == 0
    taken = claims.claim(target, builder, run.pk, elsewhere(worker=2))
    assert taken is not None and taken.shard_id == frozen.shard_id
    assert (taken.took_over, taken.why) == (
        "another-host pid 1 worker 0",
        "its lease expired (60 s)",
    )
    # The live owner's shard was not taken (its lease holds).
    assert Shard.objects.get(pk=running.shard_id).owner_session == running.owner.session


@pytest.mark.postgresql
def test_a_frozen_owner_still_holding_its_advisory_lock_loses_the_shard_at_expiry():
    """Its session is alive (a frozen process is never idle in a transaction), so
    the lock alone would keep the shard for ever."""
    fill(200)
    run = interrupted_run()
    target, builder = token_target(), builder_for(connection)
    held = threading.Event()
    done = threading.Event()
    leases: list[claims.Lease | None] = []

    def frozen_owner() -> None:
        try:
            leases.append(claims.claim(target, builder, run.pk, elsewhere()))
            held.set()
            done.wait(30)
        finally:
            # As the engine does when it stops: a pooled connection keeps no lock.
            builder.disown_all(connections["default"])
            connections["default"].close()

    thread = threading.Thread(target=frozen_owner)
    thread.start()
    try:
        assert held.wait(30)
        (frozen,) = leases
        assert frozen is not None and frozen.locked
        assert claims.uses_locks(builder, connection)
        shard = Shard.objects.get(pk=frozen.shard_id)
        assert claims.owner_alive(shard, builder, connection, fresh=True)
        expire(frozen.shard_id)
        assert not claims.owner_alive(shard, builder, connection, fresh=False)
        taken = claims.claim(target, builder, run.pk, elsewhere(worker=1))
        assert taken is not None and taken.shard_id == frozen.shard_id
        assert taken.why == "its lease expired (60 s)"
        assert not taken.locked  # the frozen session still holds it
    finally:
        done.set()
        thread.join(30)
    claims.relock(target, builder, taken)
    assert taken.locked  # taken again once the old session let go
    claims.release(target, builder, taken)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "ROTATOR_LIVENESS",
            "locks",
            "settings.ROTATOR_LIVENESS is 'locks'; expected one of 'auto', 'lease', 'advisory'",
        ),
        (
            "ROTATOR_LEASE_SECONDS",
            0,
            "settings.ROTATOR_LEASE_SECONDS is 0; expected a number of seconds above 0",
        ),
    ],
)
def test_a_bad_liveness_setting_is_one_line(name, value, message):
    with override_settings(**{name: value}), pytest.raises(RotatorError) as caught:
        claims.liveness(builder_for(connection), connection)
    assert str(caught.value) == message


def test_lease_mode_takes_no_session_lock():
    fill(200)
    run = interrupted_run()
    target, builder = token_target(), builder_for(connection)
    with override_settings(ROTATOR_LIVENESS="lease"):
        lease = claims.claim(target, builder, run.pk, elsewhere())
        assert lease is not None and not lease.locked
        assert claims.liveness(builder, connection) == "a 60 s lease on the database clock"
