"""Which worker works which shard, across threads, processes, hosts and containers.

A worker claims a shard by locking its row (``SKIP LOCKED``: a row someone
else holds, an operator's open transaction say, is passed over, not waited
for) and writing itself in as the owner, with a lease: ``lease_until``, on
the database clock (``Now()``), never two machines' clocks. Every batch
renews the lease and commits only while it holds it unexpired (the checkpoint
UPDATE is fenced on it, see batch.py), and the invocation's watcher renews
it between batches. An expired lease is never renewed: the shard may be taken.

An owner is alive while its lease holds, except that a claimant can prove it
dead sooner:

- a process on this host whose pid is gone;
- with ``ROTATOR_LIVENESS = "advisory"`` (the default on a direct PostgreSQL
  or MySQL connection): the owner's session advisory lock (``GET_LOCK()`` on
  MySQL) is free, so its database session is gone.

So a frozen owner (SIGSTOP, a paused VM) loses its shards when its lease
expires (``ROTATOR_LEASE_SECONDS``, 60 s by default), on every database;
when it wakes, its next batch is fenced out (``ShardLost``). Behind a
transaction pooler (PgBouncer ``pool_mode = transaction``) session locks
would stay on a server connection others use, so ``"auto"`` (the default)
takes no lock there: liveness is the lease alone (``"lease"``).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models import BooleanField, Case, DateTimeField, ExpressionWrapper, Q, Value, When
from django.db.models.functions import Now

from rotator.errors import RotatorError
from rotator.models import Shard
from rotator.sql import Builder
from rotator.target import Target
from rotator.workers.processes import pid_alive

#: How long an owner's lease lasts unless renewed (the ROTATOR_LEASE_SECONDS default).
LEASE = timedelta(seconds=60)
#: ROTATOR_LIVENESS values: "auto" takes advisory locks only on direct connections.
LIVENESS = ("auto", "lease", "advisory")


def _host() -> str:
    """This host, and its PID namespace where the kernel says: containers that share a
    hostname but not their pids must never compare pids."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return socket.gethostname()
    return f"{socket.gethostname()}/{namespace.removeprefix('pid:').strip('[]')}"


HOST = _host()
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
    why: str = ""  # how the previous owner was found dead
    locked: bool = False  # this worker holds the shard's advisory lock

    def mine(self) -> Q:
        """The shard row, if this lease still owns it."""
        return Q(pk=self.shard_id, owner_session=self.owner.session, owner_worker=self.owner.worker)


def lease() -> timedelta:
    """How long a lease lasts: ``settings.ROTATOR_LEASE_SECONDS`` (default 60)."""
    seconds = getattr(settings, "ROTATOR_LEASE_SECONDS", LEASE.total_seconds())
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        raise RotatorError(
            f"settings.ROTATOR_LEASE_SECONDS is {seconds!r}; expected a number of seconds above 0"
        )
    return timedelta(seconds=seconds)


def lease_end() -> ExpressionWrapper:
    """``Now()`` plus the lease, on the database clock."""
    return ExpressionWrapper(Now() + Value(lease()), output_field=DateTimeField())


def uses_locks(builder: Builder, connection: Any) -> bool:
    """Whether liveness takes session locks on ``connection`` (ROTATOR_LIVENESS)."""
    mode = getattr(settings, "ROTATOR_LIVENESS", "auto")
    if mode not in LIVENESS:
        raise RotatorError(
            f"settings.ROTATOR_LIVENESS is {mode!r}; expected one of "
            + ", ".join(repr(m) for m in LIVENESS)
        )
    if mode == "lease" or not builder.has_locks:
        return False
    if mode == "advisory":
        return True
    return not builder.pooled(connection)


def liveness(builder: Builder, connection: Any) -> str:
    """How owners are known alive, in words (the command says it)."""
    seconds = f"{lease().total_seconds():g} s"
    if uses_locks(builder, connection):
        return f"session locks and a {seconds} lease"
    return f"a {seconds} lease on the database clock"


def _with_freshness(shards: Any) -> Any:
    """Annotate ``fresh``: the owner's lease has not expired, by the database clock."""
    return shards.annotate(
        fresh=Case(
            When(lease_until__gte=Now(), then=True), default=False, output_field=BooleanField()
        )
    )


def owner_alive(shard: Shard, builder: Builder, connection: Any, fresh: bool) -> bool:
    """Is the owner of a running shard alive? ``fresh``: its lease has not expired."""
    return not _dead_because(shard, builder, connection, fresh)


def _dead_because(shard: Shard, builder: Builder, connection: Any, fresh: bool) -> str:
    """Why a running shard's owner is known dead ("" while it may be alive)."""
    if not shard.owner_session:
        return "it has no owner"
    expired = f"its lease expired ({lease().total_seconds():g} s)"
    if uses_locks(builder, connection):
        # The database's answer first: a free lock is a session gone, whatever pids say.
        if builder.owner_alive(connection, shard.pk) is False:
            return "its session is gone"
        return "" if fresh else expired
    if shard.owner_host == HOST and shard.owner_pid is not None:
        if shard.owner_pid == os.getpid():
            return "" if shard.owner_session in LIVE_SESSIONS else "its session ended"
        if not pid_alive(shard.owner_pid):
            return "its process is gone"
    return "" if fresh else expired


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
            previous = why = ""
            if shard.state == Shard.State.RUNNING:
                why = _dead_because(shard, builder, connection, shard.fresh)
                if not why:
                    continue
                previous = shard.owner
            # The lock only tells others this session is alive: a frozen owner may
            # still hold it after its lease expired, and the fenced batches keep
            # the shard exact either way (the engine takes the lock again later).
            locked = uses_locks(builder, connection) and builder.try_own(connection, shard.pk)
            shards.filter(pk=shard.pk).update(
                state=Shard.State.RUNNING,
                heartbeat_at=Now(),
                lease_until=lease_end(),
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
            why=why,
            locked=locked,
        )
    return None


def release(target: Target, builder: Builder, lease: Lease) -> None:
    """Hand an unfinished shard back so that the next run takes it at once."""
    Shard.objects.using(target.alias).filter(lease.mine(), state=Shard.State.RUNNING).update(
        state=Shard.State.PENDING, lease_until=None, **NO_OWNER
    )
    disown(target, builder, lease)


def disown(target: Target, builder: Builder, lease: Lease) -> None:
    """Give back the shard's advisory lock, if this worker took it."""
    if lease.locked:
        builder.disown(connections[target.alias], lease.shard_id)
        lease.locked = False


def relock(target: Target, builder: Builder, lease: Lease) -> None:
    """Take the shard's lock where it is used and not yet held (after a reconnect, or when
    a frozen former owner held it at the claim)."""
    connection = connections[target.alias]
    if not lease.locked and uses_locks(builder, connection):
        lease.locked = builder.try_own(connection, lease.shard_id)


def renew(target: Target, session: str) -> int:
    """Extend the unexpired leases of one invocation's running shards (between batches)."""
    return (
        Shard.objects.using(target.alias)
        .filter(owner_session=session, state=Shard.State.RUNNING, lease_until__gte=Now())
        .update(lease_until=lease_end())
    )


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
