"""Seed a large ticket table once per test session, then copy it for every test.

The slow tests each want the same few table sizes (200,000 rows for the
resume tests, 100,000, 60,000, 20,000). Generating and sending that many rows
takes seconds per test; copying them inside the server takes a fraction. The
first test that asks for ``count`` rows seeds them as before and keeps a copy
in ``test_seed_<count>`` (not a Django model, so the flush between
transactional tests leaves it alone); later tests insert from that copy.

Every test still gets fresh ids from the table's own sequence, in the order
seeding gave them, and the same subjects and timestamps the seeding wrote.
The tokens are the same across tests of a session, which no test minds: each
compares against its own snapshot taken after ``fill()``, and the table is
emptied between tests, so the unique index never sees two copies.
"""

from __future__ import annotations

from django.db import connection, transaction

from tickets.models import Ticket
from tickets.seeding import seed

#: Tables at least this big come from a template; smaller ones are seeded (milliseconds).
TEMPLATE_ROWS = 10_000


def fill(count: int) -> None:
    """``count`` new tickets, as ``tickets.seeding.seed`` makes them."""
    # In a test that runs inside a transaction, a template made there would
    # roll back with it (and MySQL's CREATE TABLE would commit it): seed.
    if count < TEMPLATE_ROWS or connection.in_atomic_block:
        seed(count, "default", lambda n: None)
        return
    qn = connection.ops.quote_name
    tickets, template = qn(Ticket._meta.db_table), qn(f"test_seed_{count}")
    columns = ", ".join(
        qn(Ticket._meta.get_field(name).column) for name in ("token", "subject", "created_at")
    )
    if f"test_seed_{count}" not in connection.introspection.table_names():
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COALESCE(MAX({qn('id')}), 0) FROM {tickets}")
            (last,) = cursor.fetchone()
            seed(count, "default", lambda n: None)
            cursor.execute(
                f"CREATE TABLE {template} AS SELECT {qn('id')} AS n, {columns} "
                f"FROM {tickets} WHERE {qn('id')} > %s",
                [last],
            )
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {tickets} ({columns}) SELECT {columns} FROM {template} ORDER BY n"
        )
        if connection.vendor == "postgresql":
            cursor.execute(f"ANALYZE {tickets}")  # as seeding does: the planner sees the rows
