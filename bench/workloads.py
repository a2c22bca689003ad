"""What each contender does, run inside a fresh child process (see child.py).

Every workload takes the job's parameters and returns (rows written, detail).
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Callable
from typing import Any

from django.core.management.base import OutputWrapper
from django.db import connections

from rotator.command.console import rotate_and_report
from rotator.service.options import Options
from rotator.target import resolve_target
from tickets.models import Ticket
from tickets.seeding import seed

Workload = Callable[[dict[str, Any]], tuple[int, str]]

BATCH = 10_000
COROUTINES = 8


def seeding(job: dict[str, Any]) -> tuple[int, str]:
    seed(job["rows"], "default", lambda n: None)
    return job["rows"], ""


def floor(job: dict[str, Any]) -> tuple[int, str]:
    connection = connections["default"]
    qn = connection.ops.quote_name
    table, column = Ticket._meta.db_table, Ticket._meta.get_field("token").column
    if connection.vendor != "postgresql":
        from .vendors import floor as vendor_floor

        return vendor_floor(qn(table), qn(column)), ""
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {qn(table)} SET {qn(column)} = gen_random_uuid()")
        return cursor.rowcount, ""


def floor_split(job: dict[str, Any]) -> tuple[int, str]:
    """The floor's one UPDATE cut in ``parts`` statements over the key's ranges, run at
    once on ``parts`` connections: what any sharding into that many workers could reach
    on this machine (PostgreSQL)."""
    import threading

    from django.db import connection as own

    qn = own.ops.quote_name
    table, column = qn(Ticket._meta.db_table), qn(Ticket._meta.get_field("token").column)
    pk = qn(Ticket._meta.pk.column)
    parts = int(job["parts"])
    edges = [job["lower"] + (job["upper"] - job["lower"]) * i // parts for i in range(parts + 1)]
    counts = [0] * parts
    failures: list[BaseException] = []
    go = threading.Barrier(parts)

    def part(i: int) -> None:
        from django.db import connection

        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")  # connected before the start: not timed apart
                go.wait()
                cursor.execute(
                    f"UPDATE {table} SET {column} = gen_random_uuid() "
                    f"WHERE {pk} > %s AND {pk} <= %s",
                    [edges[i], edges[i + 1]],
                )
                counts[i] = cursor.rowcount
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=part, args=(i,)) for i in range(parts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return sum(counts), ""


def textbook(job: dict[str, Any]) -> tuple[int, str]:
    rows, batch = 0, []
    # Up to the sample's last key (all rows unless a pilot runs on the first ones).
    for ticket in Ticket.objects.filter(pk__lte=job["upper"]).iterator(chunk_size=BATCH):
        ticket.token = uuid.uuid4()
        batch.append(ticket)
        if len(batch) == BATCH:
            Ticket.objects.bulk_update(batch, ["token"])
            rows += len(batch)
            batch = []
    if batch:
        Ticket.objects.bulk_update(batch, ["token"])
        rows += len(batch)
    return rows, ""


def per_row(job: dict[str, Any]) -> tuple[int, str]:
    rows = 0
    sample = Ticket.objects.filter(pk__lte=job["upper"]).order_by("pk")
    for ticket in sample.iterator(chunk_size=2_000):
        ticket.token = uuid.uuid4()
        ticket.save(update_fields=["token"])
        rows += 1
    return rows, ""


async def _literal_worker(lower: int, upper: int) -> int:
    rows, batch = 0, []
    window = Ticket.objects.filter(pk__gt=lower, pk__lte=upper).order_by("pk")
    async for ticket in window.aiterator(chunk_size=BATCH):
        ticket.token = uuid.uuid4()
        batch.append(ticket)
        if len(batch) == BATCH:
            await Ticket.objects.abulk_update(batch, ["token"])
            rows += len(batch)
            batch = []
    if batch:
        await Ticket.objects.abulk_update(batch, ["token"])
        rows += len(batch)
    return rows


async def _literal(lower: int, upper: int) -> int:
    edges = [lower + (upper - lower) * i // COROUTINES for i in range(COROUTINES + 1)]
    done = await asyncio.gather(
        *(_literal_worker(edges[i], edges[i + 1]) for i in range(COROUTINES))
    )
    return sum(done)


def async_literal(job: dict[str, Any]) -> tuple[int, str]:
    """The design card read literally: 8 coroutines, Django's async ORM, slices of ids."""
    return asyncio.run(_literal(job["lower"], job["upper"])), ""


class FakeTty(io.TextIOBase):
    """A terminal that discards what it is shown, so tqdm draws its bar."""

    def __init__(self) -> None:
        self.chars = 0

    def isatty(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.chars += len(s)
        return len(s)


def rotator(job: dict[str, Any]) -> tuple[int, str]:
    tty = job.get("tty", False)
    err = FakeTty() if tty else io.StringIO()
    report = rotate_and_report(
        resolve_target("tickets.Ticket.token", "default"),
        Options(
            workers=job["workers"],
            generator=job.get("generator"),
            verbosity=job.get("verbosity", 1),
            tty=tty,
            # No application writes during a benchmark: the final check runs at once
            # (the default --settle waits 30 s for saves of instances loaded earlier).
            settle=0.0,
        ),
        OutputWrapper(io.StringIO()),
        OutputWrapper(err),
    )
    if not report.finished:
        raise AssertionError(f"unreachable: run {report.run_id} did not finish")
    detail = ""
    if isinstance(err, FakeTty):
        detail = "tqdm bar drawn" if err.chars else "no bar was drawn"
    return report.rows, detail


WORKLOADS: dict[str, Workload] = {
    "seed": seeding,
    "floor": floor,
    "floor-split": floor_split,
    "textbook": textbook,
    "per-row": per_row,
    "async-literal": async_literal,
    "rotator": rotator,
}
