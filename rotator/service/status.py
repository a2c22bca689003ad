"""--status: every run of a target, read from the database, changing nothing.

Ages are measured with the database clock, like the heartbeats themselves.
The rate is the run's average over the time some process worked it
(``Run.seconds_running``, kept on the database clock by every live process:
store/lifecycle.py), so pauses and downtime are left out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from django.db import connections

from rotator.models import Run, Shard
from rotator.sql import builder_for
from rotator.store.claims import owner_alive
from rotator.store.lifecycle import GAP, database_now, runs_for
from rotator.target import Target
from rotator.text import format_duration


@dataclass
class Holder:
    """One process holding shards of a run."""

    host: str
    pid: int | None
    session: str
    workers: list[int]
    shards: list[int]
    last_heartbeat: datetime | None
    heartbeat_age: float | None
    alive: bool


@dataclass
class ShardStatus:
    index: int
    state: str
    rows_done: int
    rows_planned: int
    rows_vanished: int
    rows_kept: int
    rows_null: int
    lower: str | None
    upper: str
    cursor: str | None
    owner: str
    heartbeat_age: float | None
    alive: bool | None


@dataclass
class RunStatus:
    id: int
    target: str
    table: str
    column: str
    state: str
    stop_reason: str
    error: str  # "Class: one line" of an errored run
    rows_done: int
    rows_planned: int
    percent: float
    rate: float | None
    seconds_remaining: float | None
    seconds_running: float
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    holders: list[Holder] = field(default_factory=list)
    shards: list[ShardStatus] = field(default_factory=list)


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else max(0.0, (now - then).total_seconds())


def run_status(run: Run, now: datetime, label: str = "") -> RunStatus:
    """The status of one run, ``now`` being the database's clock."""
    # run.shards.all(): the admin's list prefetches them for every run in one query.
    # Otherwise the run's own database: a router may send reads to a replica.
    prefetched = "shards" in getattr(run, "_prefetched_objects_cache", {})
    every = run.shards.all() if prefetched else run.shards.using(run._state.db)
    shards = sorted(every, key=lambda shard: shard.index)
    done = sum(s.rows_done for s in shards)
    holders, rows = _shards(run, shards, now)
    live = any(h.alive for h in holders)
    rate, remaining = _rate(run, done, live, now)
    return RunStatus(
        id=run.pk,
        target=label or run.target,
        table=run.table,
        column=run.column,
        state=_state(run, live),
        stop_reason=run.stop_reason,
        error=f"{run.error_class}: {run.error_message}" if run.error_class else "",
        rows_done=done,
        rows_planned=run.total_rows,
        percent=round(100.0 * done / run.total_rows, 1) if run.total_rows else 100.0,
        rate=rate,
        seconds_remaining=remaining,
        seconds_running=run.seconds_running,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        holders=holders,
        shards=rows,
    )


def _shards(run: Run, shards: list[Shard], now: datetime) -> tuple[list[Holder], list[ShardStatus]]:
    """Each shard's status, and the processes holding running shards (alive or not)."""
    connection = connections[run._state.db or "default"]
    builder = builder_for(connection)
    holders: dict[str, Holder] = {}
    rows: list[ShardStatus] = []
    for shard in shards:
        age = _age(now, shard.heartbeat_at)
        alive = None
        if shard.state == Shard.State.RUNNING:
            fresh = shard.lease_until is not None and shard.lease_until >= now
            alive = owner_alive(shard, builder, connection, fresh)
            _hold(holders, shard, age, alive)
        rows.append(
            ShardStatus(
                shard.index,
                shard.state,
                shard.rows_done,
                shard.rows_planned,
                shard.rows_vanished,
                shard.rows_kept,
                shard.rows_null,
                shard.lower,
                shard.upper,
                shard.cursor,
                shard.owner,
                age,
                alive,
            )
        )
    for holder in holders.values():
        holder.workers.sort()
    return list(holders.values()), rows


def _hold(holders: dict[str, Holder], shard: Shard, age: float | None, alive: bool) -> None:
    holder = holders.setdefault(
        shard.owner_session,
        Holder(shard.owner_host, shard.owner_pid, shard.owner_session, [], [], None, None, alive),
    )
    if shard.owner_worker is not None and shard.owner_worker not in holder.workers:
        holder.workers.append(shard.owner_worker)
    holder.shards.append(shard.index)
    holder.alive = holder.alive or alive
    if shard.heartbeat_at and (
        holder.last_heartbeat is None or shard.heartbeat_at > holder.last_heartbeat
    ):
        holder.last_heartbeat, holder.heartbeat_age = shard.heartbeat_at, age


def _state(run: Run, live: bool) -> str:
    """planned, running, stopped (no live worker), paused, errored, finished or abandoned."""
    if run.state != Run.State.ACTIVE:
        return str(run.state)
    if run.started_at is None:
        return "planned"
    return "running" if live else "stopped"


def _rate(run: Run, done: int, live: bool, now: datetime) -> tuple[float | None, float | None]:
    """Rows per second while running, and the seconds left at that rate (when live)."""
    seconds = run.seconds_running
    if live and run.state == Run.State.ACTIVE and run.heartbeat_at is not None:
        since = (now - run.heartbeat_at).total_seconds()  # not yet ticked
        seconds += since if 0 <= since <= GAP else 0.0
    if run.started_at is None or done == 0 or seconds <= 0:
        return None, None
    rate = done / seconds
    remaining = None
    if run.state in (Run.State.ACTIVE, Run.State.PAUSED) and live:
        remaining = max(0, run.total_rows - done) / rate
    return rate, remaining


def statuses(target: Target) -> list[RunStatus]:
    """Every run of the target, newest first."""
    qs = list(runs_for(target).order_by("-pk"))
    if not qs:
        return []
    now = database_now(target.alias)
    return [run_status(run, now, target.label) for run in qs]


def as_json(target: Target, runs: list[RunStatus]) -> dict[str, Any]:
    def encode(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, dict):
            return {k: encode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [encode(v) for v in value]
        return value

    return {
        "target": target.label,
        "database": target.alias,
        "runs": [encode(asdict(r)) for r in runs],
    }


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z") if value else "-"


def _ago(age: float | None) -> str:
    return "never" if age is None else f"{format_duration(age)} ago"


def lines(status: RunStatus, verbosity: int = 1) -> list[str]:
    """The status of one run for people."""
    out = [f"Run {status.id} of {status.target}: {status.state}"]
    if status.stop_reason:
        out.append(f"  reason: {status.stop_reason}")
    if status.error:
        out.append(f"  error: {status.error}")
    out.append(
        f"  rows: {status.rows_done:,}/{status.rows_planned:,} rotated ({status.percent:.1f}%)"
    )
    rate = "-" if status.rate is None else f"{status.rate:,.0f} rows/s (average while running)"
    left = status.seconds_remaining
    remaining = "-" if left is None else format_duration(left)
    out.append(f"  rate: {rate}; time remaining: {remaining}")
    out.append(
        f"  planned {_when(status.created_at)}, started {_when(status.started_at)}, "
        f"finished {_when(status.finished_at)}"
    )
    for h in status.holders:
        workers = ", ".join(str(w) for w in h.workers)
        out.append(
            f"  held by {h.host} pid {h.pid}: worker{'s' if len(h.workers) != 1 else ''} "
            f"{workers} on {len(h.shards)} shard{'s' if len(h.shards) != 1 else ''}, "
            f"last heartbeat {_ago(h.heartbeat_age)}, {'alive' if h.alive else 'dead'}"
        )
    if verbosity >= 2:
        for s in status.shards:
            owner = f", {s.owner}, heartbeat {_ago(s.heartbeat_age)}" if s.owner else ""
            alive = "" if s.alive is None else (", alive" if s.alive else ", dead")
            start = "start" if s.lower is None else s.lower
            out.append(
                f"    shard {s.index}: keys ({start}, {s.upper}], {s.state}, "
                f"{s.rows_done:,}/{s.rows_planned:,} rows{owner}{alive}"
            )
    return out
