"""The SQL of one batch reads only its window, through the primary key index."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection, transaction

from rotator.generators import Tokens, packed_uuid4
from rotator.sql.postgresql import PostgreSQLBuilder
from rotator.sql.sqlite import SQLiteBuilder
from tests.conftest import fill
from tests.support import token_target
from tickets.models import Ticket

ROWS = 100_000
LIMIT = 1_000


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def pk_index() -> str:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "tickets_ticket")
    (name,) = [name for name, c in constraints.items() if c["primary_key"]]
    return name


def explain(kind: str, lo: int | None, hi: int, *, analyze: bool) -> dict[str, Any]:
    """EXPLAIN (FORMAT JSON) of the batch statement exactly as PostgreSQLBuilder runs it:
    after the COPY of the batch's new values into the session's temporary table."""
    target, builder = token_target(), PostgreSQLBuilder()
    sql = builder.sql(connection, target, lower=lo is not None, server_side=kind == "database")
    params: dict[str, Any] = {"hi": str(hi), "limit": LIMIT, "keep": None}
    if lo is not None:
        params["lo"] = str(lo)
    options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
    connection.ensure_connection()
    builder.prepare_session(connection, target, "rotator test")
    with transaction.atomic(), psycopg.Cursor(connection.connection) as cursor:
        if kind == "copy":
            builder._copy(cursor, connection, target, Tokens(LIMIT, packed=packed_uuid4(LIMIT)))
        cursor.execute(f"EXPLAIN ({options}) {sql}", params)
        (document,) = cursor.fetchone()
        transaction.set_rollback(True)  # EXPLAIN ANALYZE really updates
    return document[0]["Plan"]


def unique_index(column: str) -> str:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "tickets_ticket")
    (name,) = [n for n, c in constraints.items() if c["unique"] and c["columns"] == [column]]
    return name


@pytest.fixture(scope="module")
def big_table(django_db_setup, django_db_blocker) -> Iterator[list[int]]:
    """100,000 tickets, seeded once for this module's EXPLAINs (which roll back)."""
    with django_db_blocker.unblock():
        fill(ROWS)
        ids = sorted(Ticket.objects.values_list("pk", flat=True))
    yield ids
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE tickets_ticket")


# (lo, hi) as positions in the table: the first batch of the first shard, a
# batch in the middle of a shard, and one in the last shard, which runs to
# the end of the table.
WINDOWS = {"start": (None, 24_999), "middle": (50_000, 74_999), "last": (75_000, ROWS - 1)}


@pytest.mark.postgresql
@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["copy", "database"])
@pytest.mark.parametrize("window", list(WINDOWS))
def test_a_batch_reads_its_window_through_the_primary_key(big_table, kind, window):
    lo_at, hi_at = WINDOWS[window]
    lo = None if lo_at is None else big_table[lo_at]
    hi = big_table[hi_at]
    # The window through the primary key; "is this new value taken?" through the
    # token's unique index; no other way into the table.
    indexes = {pk_index(), unique_index("token")}

    planned = list(nodes(explain(kind, lo, hi, analyze=False)))
    scans = [n for n in planned if n.get("Relation Name") == "tickets_ticket"]
    assert {n["Node Type"] for n in scans} <= {"Index Scan", "Index Only Scan", "ModifyTable"}
    for scan in scans:
        if scan["Node Type"] != "ModifyTable":
            assert scan["Index Name"] in indexes
            assert scan["Index Cond"]

    # Executed (and rolled back): no scan of the table, hashed or not, reads
    # more than the batch, whatever the estimates said. (Before PostgreSQL 16
    # row_number() reads one row past the LIMIT to look for peers.)
    executed = list(nodes(explain(kind, lo, hi, analyze=True)))
    for scan in executed:
        if scan.get("Relation Name") == "tickets_ticket" and scan["Node Type"] != "ModifyTable":
            assert scan["Node Type"] != "Seq Scan"
            assert scan["Actual Rows"] * scan["Actual Loops"] <= LIMIT + 1, scan
        if scan["Node Type"] == "Seq Scan":  # only the batch's own new values
            assert scan["Relation Name"].startswith("rotator_new_")
            assert scan["Actual Rows"] <= LIMIT
    for join in executed:
        if join["Node Type"] == "Hash":
            (inner,) = join["Plans"]
            assert inner["Node Type"] in {"Index Scan", "Index Only Scan", "CTE Scan"}, inner
            assert inner["Actual Rows"] <= LIMIT + 1
    (update,) = [n for n in executed if n["Node Type"] == "ModifyTable"]
    assert update["Operation"] == "Update"


@pytest.mark.sqlite
@pytest.mark.django_db
def test_sqlite_batch_statements_search_the_primary_key():
    builder = SQLiteBuilder()
    for lower in (False, True):
        select, update = builder.sql(connection, token_target(), lower=lower)
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN QUERY PLAN {select}", [1, 2, 3][: 3 if lower else 2])
            select_plan = " ".join(str(row[-1]) for row in cursor.fetchall())
            cursor.execute(f"EXPLAIN QUERY PLAN {update}", [None, 1])
            update_plan = " ".join(str(row[-1]) for row in cursor.fetchall())
        assert "SEARCH tickets_ticket USING INTEGER PRIMARY KEY" in select_plan
        assert "SCAN" not in select_plan
        assert "SEARCH tickets_ticket USING INTEGER PRIMARY KEY (rowid=?)" in update_plan
