"""A revocation's plan: which rows go, copied as keys on the server; resuming; --dry-run.

The keys of the rows to delete are copied into ``RevocationKey`` inside the
planning transaction (``Revoking.snapshot_keys``), numbered in key order;
with ``--leaked`` the dump is first loaded the way ``--leaked`` loads it
(service/leaked.py) and only the rows holding one of its values are copied.
The shards are ranges of those row numbers.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connections

from rotator.errors import RotatorError
from rotator.models import UNFINISHED, RevocationKey, Run
from rotator.service import leaked
from rotator.service.options import Options
from rotator.service.rotation import Events
from rotator.sql import Builder
from rotator.sql.base import positions
from rotator.sql.revoke_base import match_condition
from rotator.store import lifecycle
from rotator.store.planning import Plan, ShardPlan
from rotator.target import RevokeTarget, Target

OPERATION = "revoke"


@dataclass(frozen=True)
class Dump:
    """--leaked FILE: the values whose rows go (``column``: a CSV's; ``hashed``: sha256 hex)."""

    path: Path
    column: str | None = None
    hashed: bool = False


def forget_ended(target: Target) -> int:
    """Delete the planned keys of the target's finished and abandoned revocations."""
    ended = lifecycle.runs_for(target).exclude(state__in=UNFINISHED)
    tags = [run.options.get("snapshot") for run in ended.only("options")]
    tags = [tag for tag in tags if tag]
    if not tags:
        return 0
    keys = RevocationKey.objects.using(target.alias).filter(snapshot__in=tags)
    return keys._raw_delete(target.alias)


def check_resumable(run: Run, target: Target, shards: int | None, dump: Dump | None) -> None:
    planned = run.shards.count()
    if shards is not None and shards != planned:
        raise RotatorError(
            f"--shards {shards} does not match run {run.pk}, planned with {planned} shards; "
            "resume without --shards, or --cancel the run and plan again"
        )
    was = run.options.get("leaked")
    if dump is not None and str(dump.path) != was:
        source = f"from {was!r}" if was else "for every row"
        raise RotatorError(
            f"run {run.pk} of {target.label} was planned {source}, not from "
            f"{str(dump.path)!r}; resume it without --leaked, or --cancel it and plan again"
        )


def _snapshot(target: Target, builder: Any, dump: Dump | None, tag: str, notes: dict) -> int:
    """Copy the keys of the rows to delete (inside the planning transaction)."""
    connection = connections[target.alias]
    if dump is None:
        return int(builder.snapshot_keys(connection, target, tag, None))
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the driver's cursor: values never reach Django's query log
        builder.leaked_table(connection, target, raw, leaked.TEMP, dump.hashed)
        try:
            values = leaked.dump_values(target, dump.path, dump.column, dump.hashed)
            notes["leaked_lines"] = builder.load_leaked(
                connection, target, raw, leaked.TEMP, values, dump.hashed
            )
            match = match_condition(builder, connection, target, leaked.TEMP, dump.hashed)
            return int(builder.snapshot_keys(connection, target, tag, match))
        finally:
            with contextlib.suppress(Exception):
                raw.execute(f"DROP TABLE IF EXISTS {leaked.TEMP}")


def plan_or_resume(
    target: RevokeTarget,
    run: Run | None,
    shards: int,
    dump: Dump | None,
    builder: Builder,
    events: Events,
) -> Run | None:
    if run is not None:
        was = f"{run.state} " if run.state != Run.State.ACTIVE else ""
        lifecycle.resume(run)
        events.note(
            f"Resuming {was}run {run.pk} of {target.label}: "
            f"{run.rows_done():,}/{run.total_rows:,} planned rows already revoked."
        )
        return run
    tag = uuid.uuid4().hex
    options: dict[str, Any] = {
        "operation": OPERATION,
        "snapshot": tag,
        "leaked": str(dump.path) if dump else None,
        "shards": shards,
    }

    def make(target: Target, builder: Builder, shards: int) -> Plan:
        total = _snapshot(target, builder, dump, tag, options)
        if not total:
            return Plan(None, 0, [])
        ends = positions(total, shards)
        bounds = zip([None, *map(str, ends)], map(str, ends), strict=False)
        counts = [end - start for start, end in zip([0, *ends], ends, strict=False)]
        plans = [
            ShardPlan(i, lower, upper, rows)
            for i, ((lower, upper), rows) in enumerate(zip(bounds, counts, strict=True))
        ]
        return Plan(str(total), total, plans)

    which = f"rows in {str(dump.path)!r}" if dump else "every row"
    events.note(f"Planning a revocation of {which} of {target.label} in {shards} shards ...")
    run, created = lifecycle.plan(target, builder, shards, options, make)
    if run is None:
        if dump is None:
            events.note(f"Nothing to revoke: {target.label} has no rows.")
        else:
            lines = options.get("leaked_lines", 0)
            events.note(
                f"Nothing to revoke: none of the {lines:,} leaked values in "
                f"{str(dump.path)!r} is in {target.label}.{target.field.name}."
            )
        return None
    verb = "Planned" if created else "Joined"
    events.note(
        f"{verb} run {run.pk}: {run.total_rows:,} rows of {target.label} to revoke in "
        f"{run.shards.count()} shards; rows created from now on are kept."
    )
    return run


def dry_run_lines(
    target: RevokeTarget,
    options: Options,
    run: Run | None,
    shards: int,
    dump: Dump | None,
    builder: Any,
) -> list[str]:
    """What --dry-run shows: which rows would go, the plan, the SQL of one batch."""
    connection = connections[target.alias]
    lines = [
        "Dry run: nothing will be changed.",
        f"Target: {target.label} on database {target.alias!r} ({connection.vendor}); no "
        "other table references its rows with an on_delete rule a DELETE would skip",
    ]
    if run is not None:
        lines.append(
            f"Would resume run {run.pk}: {run.rows_done():,}/{run.total_rows:,} planned rows "
            f"revoked, in {run.shards.count()} shards"
        )
    elif dump is not None:
        found = leaked.count_leaked(target, dump.path, dump.column, dump.hashed)
        lines.append(
            f"Would revoke the {found.present:,} rows of {target.label} whose "
            f"{target.field.name} is one of the {found.lines:,} leaked values in "
            f"{str(dump.path)!r}, in up to {shards} shards"
        )
    else:
        rows = target.queryset().count()
        lines.append(
            f"Would revoke every row of {target.label} ({rows:,} rows now; rows created after "
            f"the plan are kept), in up to {shards} shards"
        )
    lines.append(f"Workers: {options.workers}")
    lines.append("SQL of one batch (the keys never leave the server):")
    lines += [f"  {line}" for line in builder.describe_revoke(connection, target).splitlines()]
    return lines
