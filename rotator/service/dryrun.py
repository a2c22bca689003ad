"""--dry-run: print the plan (or the stored one) and the SQL of one batch."""

from __future__ import annotations

from typing import Any

from django.db import connections

from rotator.generators import Generator
from rotator.models import Run
from rotator.service.options import Options
from rotator.store.planning import make_plan
from rotator.target import Target
from rotator.workers.sizing import BatchSizer


def _describe_generator(gen: Generator) -> str:
    if gen.server_side:
        return "database (gen_random_uuid() on the server)"
    if gen.packed:
        return f"{gen.name} (uuid4 from os.urandom, generated in bulk)"
    return gen.name


def value_notes(target: Target, options: Options, generator: Generator) -> list[str]:
    """What a user must know about the values before rotating (also for the plan)."""
    notes = []
    if generator.derived:
        notes.append(
            f"Stored values: what {type(target.field).__name__}.pre_save() makes of each new "
            "value (as save() stores it); the new plaintext values are not kept"
        )
    if not target.unique:
        notes.append(f"Uniqueness: {target.field.column!r} is not unique; no collision checks")
    if target.field.null:
        nulls = target.null_rows()
        then = "filled (--fill-nulls)" if options.fill_nulls else "kept NULL (--fill-nulls fills)"
        notes.append(f"NULL rows: {nulls:,}, {then}")
    return notes


def dry_run_lines(
    target: Target,
    options: Options,
    run: Run | None,
    shards: int,
    generator: Generator,
    builder: Any,
) -> list[str]:
    """What --dry-run shows: the plan (or the stored one) and the SQL of one batch."""
    lines: list[str] = []
    out = _Lines(lines)
    connection = connections[target.alias]
    out.write("Dry run: nothing will be changed.")
    out.write(f"Target: {target.label} on database {target.alias!r} ({connection.vendor})")
    out.write(f"Generator: {_describe_generator(generator)}")
    sizer = BatchSizer.of(options.batch_size, options.batch_seconds)
    out.write(f"Batch size: {sizer.describe()}")
    out.write(f"Workers: {options.workers}")
    for line in value_notes(target, options, generator):
        out.write(line)
    if run is not None:
        out.write(
            f"Would resume run {run.pk} (planned {run.created_at:%Y-%m-%d %H:%M %Z}): "
            f"{run.rows_done():,}/{run.total_rows:,} rows done, keys up to {run.high_water}"
        )
        rows = [
            (s.index, s.lower, s.upper, s.rows_planned, f"{s.state}, {s.rows_done:,} done")
            for s in run.shards.using(run._state.db)
        ]
    else:
        plan = make_plan(target, builder, shards)
        out.write(f"Would plan a new run: {plan.total_rows:,} rows, keys up to {plan.high_water}")
        rows = [(s.index, s.lower, s.upper, s.rows, "pending") for s in plan.shards]
    out.write(f"Shards: {len(rows)}")
    for index, lower, upper, count, state in rows:
        start = "start" if lower is None else lower
        out.write(f"  shard {index}: keys ({start}, {upper}], {count:,} rows, {state}")
    out.write("SQL of one batch:")
    for line in builder.describe(connection, target, generator).splitlines():
        out.write(f"  {line}")
    return lines


class _Lines:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def write(self, line: str) -> None:
        self.lines.append(line)
