"""Which worker works which shard, across threads, processes, hosts and containers.

A worker claims a shard by locking its row (``SKIP LOCKED``: a row someone
else holds, an operator's open transaction say, is passed over, not waited
for) and writing itself in as the owner. Whether a running shard's owner is
still alive is the database's answer, never a guess from host names, pids or
two machines' clocks:

- PostgreSQL: the owner holds a session advisory lock on its own connection.
  The lock dies with the backend, so "alive" means "its database session is
  alive". A claimant that gets the lock has proved the owner gone.
- Elsewhere: heartbeats written and compared with the database clock
  (``Now()``), plus, for a process on this host, whether its pid exists.

Every batch re-checks ownership and the cursor inside its own transaction
(see batch.py), so even a wrong take-over could not rotate a row twice.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import connections, transaction
from django.db.models import BooleanField, Case, DateTimeField, ExpressionWrapper, Q, Value, When
from django.db.models.functions import Now

from rotator.models import Shard
from rotator.sql import Builder
from rotator.target import Target
from rotator.workers.processes import pid_alive

#: Without locks, a shard whose heartbeat (by the database clock) is older is orphaned.
LEASE = timedelta(seconds=60)
HOST = socket.gethostname()
#: Sessions running in this process: a shard owned by this pid under any other
#: session was left behind by an earlier, finished session (in-process reruns).
LIVE_SESSIONS: set[str] = set()


@dataclass(frozen=True)
class Owner:
    """One worker of one invocation; ``session`` is random, so never shared by two processes."""

    worker: int
    session: str = field(default_factory=lambda: uuid.uuid4().hex)
    host: str = HOST
    pid: int = field(default_factory=os.getpid)

    def columns(self) -> dict[str, Any]:
        return {
            "owner_session": self.session,
            "owner_worker": self.worker,
            "owner_host": self.host,
            "owner_pid": self.pid,
        }


NO_OWNER = {
    "owner_session": "",
    "owner_worker": None,
    "owner_host": "",
    "owner_pid": None,
}


@dataclass
class Lease:
    """A shard held by one worker; ``cursor`` is the last key it rotated."""

    shard_id: int
    index: int
    lower: str | None  # keys as the database's own values, as text
    upper: str
    cursor_text: str | None
    rows_done: int
    rows_planned: int
    owner: Owner
    took_over: str = ""  # the previous owner, when the shard was taken from a dead one

    def mine(self) -> Q:
        """The shard row, if this lease still owns it."""
        return Q(pk=self.shard_id, owner_session=self.owner.session, owner_worker=self.owner.worker)


def _with_freshness(shards: Any) -> Any:
    """Annotate ``fresh``: the heartbeat is within the lease, by the database clock."""
    cutoff = ExpressionWrapper(Now() - Value(LEASE), output_field=DateTimeField())
    return shards.annotate(
        fresh=Case(
            When(heartbeat_at__gte=cutoff, then=True), default=False, output_field=BooleanField()
        )
    )


def owner_alive(shard: Shard, builder: Builder, connection: Any, fresh: bool) -> bool:
    """Is the owner of a running shard alive? ``fresh``: its heartbeat is within the lease."""
    if not shard.owner_session:
        return False
    held = builder.owner_alive(connection, shard.pk)
    if held is not None:
        return held
    if shard.owner_host == HOST and shard.owner_pid is not None:
        if shard.owner_pid == os.getpid():
            return shard.owner_session in LIVE_SESSIONS
        if not pid_alive(shard.owner_pid):
            return False
    return fresh


def claim(target: Target, builder: Builder, run_id: int, owner: Owner) -> Lease | None:
    """Claim the first pending or orphaned shard of the run, or return None."""
    connection = connections[target.alias]
    shards = Shard.objects.using(target.alias)
    candidates = list(
        shards.filter(run_id=run_id)
        .exclude(state=Shard.State.DONE)
        .order_by("index")
        .values_list("pk", flat=True)
    )
    for pk in candidates:
        with transaction.atomic(using=target.alias):
            shard = (
                _with_freshness(shards.select_for_update(skip_locked=True))
                .filter(pk=pk)
                .exclude(state=Shard.State.DONE)
                .first()
            )
            if shard is None:
                continue
            previous = ""
            if shard.state == Shard.State.RUNNING:
                if owner_alive(shard, builder, connection, shard.fresh):
                    continue
                previous = shard.owner
            if not builder.try_own(connection, shard.pk):
                continue
            shards.filter(pk=shard.pk).update(
                state=Shard.State.RUNNING,
                heartbeat_at=Now(),
                **owner.columns(),
            )
        return Lease(
            shard_id=shard.pk,
            index=shard.index,
            lower=shard.lower,
            upper=shard.upper,
            cursor_text=shard.cursor,
            rows_done=shard.rows_done,
            rows_planned=shard.rows_planned,
            owner=owner,
            took_over=previous,
        )
    return None


def release(target: Target, builder: Builder, lease: Lease) -> None:
    """Hand an unfinished shard back so that the next run takes it at once."""
    Shard.objects.using(target.alias).filter(lease.mine(), state=Shard.State.RUNNING).update(
        state=Shard.State.PENDING, **NO_OWNER
    )
    builder.disown(connections[target.alias], lease.shard_id)


def held_elsewhere(target: Target, builder: Builder, run_id: int) -> list[str]:
    """Owners of shards still running in other, live processes."""
    connection = connections[target.alias]
    running = Shard.objects.using(target.alias).filter(run_id=run_id, state=Shard.State.RUNNING)
    return sorted(
        {
            f"{shard.owner_host} pid {shard.owner_pid}"
            for shard in _with_freshness(running)
            if owner_alive(shard, builder, connection, shard.fresh)
        }
    )
