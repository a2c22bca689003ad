"""Which worker works which shard, across threads, processes and hosts.

A worker claims a shard with a conditional UPDATE (the row must still look
as it did when read), so two claimants never both win. A running shard can
be taken over when its owner is gone: a process on this host that no longer
exists (kill -9), or an owner whose heartbeat is older than the lease. Every
batch re-checks ownership inside its own transaction (see batch.py), so even
a wrongly judged takeover cannot rotate a row twice.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from .models import Run, Shard
from .processes import pid_alive
from .target import Target

LEASE = timedelta(seconds=60)
HOST = socket.gethostname()
#: Sessions running in this process; a shard owned by this pid under any other
#: session was left behind by an earlier, finished session (in-process reruns).
LIVE_SESSIONS: set[str] = set()


@dataclass
class Lease:
    """A shard held by one worker; ``cursor`` is the last key it rotated."""

    shard_id: int
    index: int
    lower: Any
    upper: Any
    cursor: Any
    cursor_text: str | None
    rows_done: int
    rows_planned: int
    owner: str

    @property
    def start(self) -> Any:
        return self.cursor if self.cursor is not None else self.lower


def owner_name(session: str, worker: int) -> str:
    return f"{HOST}:{os.getpid()}:{session}:w{worker}"


def owner_gone(shard: Shard, now: Any) -> bool:
    if not shard.owner:
        return True
    host, pid, session, _ = (shard.owner.split(":") + ["", "", ""])[:4]
    if host == HOST and pid.isdigit():
        if int(pid) == os.getpid():
            return session not in LIVE_SESSIONS
        if not pid_alive(int(pid)):
            return True
    return shard.heartbeat_at is None or now - shard.heartbeat_at > LEASE


def claim(target: Target, run_id: int, owner: str) -> Lease | None:
    """Claim the first pending or orphaned shard of the run, or return None."""
    shards = Shard.objects.using(target.alias)
    now = timezone.now()
    for shard in shards.filter(run_id=run_id).exclude(state=Shard.State.DONE).order_by("index"):
        if shard.state == Shard.State.RUNNING and not owner_gone(shard, now):
            continue
        won = shards.filter(
            pk=shard.pk,
            state=shard.state,
            owner=shard.owner,
            heartbeat_at=shard.heartbeat_at,
        ).update(state=Shard.State.RUNNING, owner=owner, heartbeat_at=timezone.now())
        if won:
            Run.objects.using(target.alias).filter(pk=run_id).update(heartbeat_at=timezone.now())
            return Lease(
                shard_id=shard.pk,
                index=shard.index,
                lower=target.key_from_text(shard.lower),
                upper=target.key_from_text(shard.upper),
                cursor=target.key_from_text(shard.cursor),
                cursor_text=shard.cursor,
                rows_done=shard.rows_done,
                rows_planned=shard.rows_planned,
                owner=owner,
            )
    return None


def release(target: Target, lease: Lease) -> None:
    """Hand an unfinished shard back so that the next run takes it at once."""
    Shard.objects.using(target.alias).filter(
        pk=lease.shard_id, owner=lease.owner, state=Shard.State.RUNNING
    ).update(state=Shard.State.PENDING, owner="")


def held_elsewhere(target: Target, run_id: int) -> list[str]:
    """Owners of shards still running in other, live processes."""
    now = timezone.now()
    running = Shard.objects.using(target.alias).filter(
        Q(run_id=run_id) & Q(state=Shard.State.RUNNING)
    )
    return sorted({s.owner.rsplit(":", 2)[0] for s in running if not owner_gone(s, now)})
