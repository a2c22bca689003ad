"""Fill the ticket table fast: COPY on PostgreSQL, bulk_create elsewhere."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from django.db import connections, transaction
from django.utils import timezone

from rotator.generators import packed_uuid4

from .models import Ticket

CHUNK = 50_000


def _chunks(count: int) -> Iterator[int]:
    done = 0
    while done < count:
        n = min(CHUNK, count - done)
        yield n
        done += n


def seed(count: int, alias: str, advance: Callable[[int], None]) -> None:
    connection = connections[alias]
    if connection.vendor == "postgresql":
        _copy(count, alias, advance)
        return
    now = timezone.now()
    with transaction.atomic(using=alias):
        for n in _chunks(count):
            p = packed_uuid4(n)
            Ticket.objects.using(alias).bulk_create(
                (Ticket(token=_uuid(p, i), subject="seeded", created_at=now) for i in range(n)),
                batch_size=5_000,
            )
            advance(n)


def _uuid(packed: bytes, i: int) -> object:
    import uuid

    return uuid.UUID(bytes=packed[16 * i : 16 * i + 16])


def _copy(count: int, alias: str, advance: Callable[[int], None]) -> None:
    connection = connections[alias]
    qn = connection.ops.quote_name
    meta = Ticket._meta
    columns = ", ".join(qn(meta.get_field(f).column) for f in ("token", "subject", "created_at"))
    now = timezone.now().isoformat()
    suffix = f"\tseeded\t{now}\n"
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {qn(meta.db_table)} ({columns}) FROM STDIN") as copy:
            for n in _chunks(count):
                hexed = packed_uuid4(n).hex()
                copy.write("".join(hexed[32 * i : 32 * i + 32] + suffix for i in range(n)))
                advance(n)
        cursor.execute(f"ANALYZE {qn(meta.db_table)}")
