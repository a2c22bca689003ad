"""Fill the ticket table fast: COPY on PostgreSQL, bulk_create elsewhere."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import cast

from django.db import connections, models, transaction
from django.utils import timezone

from rotator.generators import packed_uuid4
from rotator.target import column_of

from .models import Ticket

CHUNK = 50_000


def _chunks(count: int) -> Iterator[int]:
    done = 0
    while done < count:
        n = min(CHUNK, count - done)
        yield n
        done += n


def seed(count: int, alias: str, advance: Callable[[int], None]) -> None:
    if connections[alias].vendor == "postgresql":
        _copy(count, alias, advance)
    else:
        _insert(count, alias, advance)


def _columns(alias: str) -> tuple[str, str]:
    qn = connections[alias].ops.quote_name
    meta = Ticket._meta
    columns = ", ".join(
        qn(column_of(cast(models.Field, meta.get_field(f))))
        for f in ("token", "subject", "created_at")
    )
    return qn(meta.db_table), columns


def _insert(count: int, alias: str, advance: Callable[[int], None]) -> None:
    """Elsewhere: executemany of prepared values (no model instances)."""
    connection = connections[alias]
    table, columns = _columns(alias)
    token = Ticket._meta.get_field("token")
    created = Ticket._meta.get_field("created_at").get_db_prep_save(timezone.now(), connection)
    sql = f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s)"
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        for n in _chunks(count):
            p = packed_uuid4(n)
            cursor.executemany(
                sql,
                [
                    (
                        token.get_db_prep_save(uuid.UUID(bytes=p[i : i + 16]), connection),
                        "seeded",
                        created,
                    )
                    for i in range(0, 16 * n, 16)
                ],
            )
            advance(n)


def _copy(count: int, alias: str, advance: Callable[[int], None]) -> None:
    connection = connections[alias]
    table, columns = _columns(alias)
    now = timezone.now().isoformat()
    suffix = f"\tseeded\t{now}\n"
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for n in _chunks(count):
                hexed = packed_uuid4(n).hex()
                copy.write("".join(hexed[32 * i : 32 * i + 32] + suffix for i in range(n)))
                advance(n)
        cursor.execute(f"ANALYZE {table}")
