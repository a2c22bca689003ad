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
from tests.environment import need
from tests.support import token_target
from tickets.models import Ticket

ROWS = 100_000
LIMIT = 1_000
#: A batch as large as the adaptive size makes them on a fast server.
BIG_LIMIT = 20_000


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def pk_index() -> str:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "tickets_ticket")
    (name,) = [name for name, c in constraints.items() if c["primary_key"]]
    return name


def explain(
    kind: str,
    lo: int | None,
    hi: int,
    *,
    analyze: bool,
    skip: bool = False,
    guard: bool = False,
    limit: int = LIMIT,
) -> dict[str, Any]:
    """EXPLAIN (FORMAT JSON) of the batch statement exactly as PostgreSQLBuilder runs it:
    after the COPY of the batch's new values into the session's temporary table; with
    ``guard``, in a transaction set up as a batch's is. The whole document."""
    target, builder = token_target(), PostgreSQLBuilder()
    sql = builder.sql(
        connection, target, lower=lo is not None, server_side=kind == "database", skip=skip
    )
    params: dict[str, Any] = {"hi": str(hi), "limit": limit, "keep": None}
    if lo is not None:
        params["lo"] = str(lo)
    options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
    connection.ensure_connection()
    builder.prepare_session(connection, target, "rotator test")
    with transaction.atomic(), psycopg.Cursor(connection.connection) as cursor:
        if guard:
            builder.guard_transaction(connection, 2.0, 15.0)
        if kind == "copy":
            builder._copy(cursor, connection, target, Tokens(limit, packed=packed_uuid4(limit)))
        cursor.execute(f"EXPLAIN ({options}) {sql}", params)
        (document,) = cursor.fetchone()
        transaction.set_rollback(True)  # EXPLAIN ANALYZE really updates
    return document[0]


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
@pytest.mark.parametrize("skip", [False, True], ids=["plain", "skip-locked"])
def test_a_batch_reads_its_window_through_the_primary_key(big_table, kind, window, skip):
    lo_at, hi_at = WINDOWS[window]
    lo = None if lo_at is None else big_table[lo_at]
    hi = big_table[hi_at]
    # The window through the primary key; "is this new value taken?" through the
    # token's unique index; no other way into the table.
    indexes = {pk_index(), unique_index("token")}

    planned = list(nodes(explain(kind, lo, hi, analyze=False, skip=skip)["Plan"]))
    scans = [n for n in planned if n.get("Relation Name") == "tickets_ticket"]
    assert {n["Node Type"] for n in scans} <= {"Index Scan", "Index Only Scan", "ModifyTable"}
    for scan in scans:
        if scan["Node Type"] != "ModifyTable":
            assert scan["Index Name"] in indexes
            assert scan["Index Cond"]

    # Executed (and rolled back): no scan of the table, hashed or not, reads
    # more than the batch, whatever the estimates said. (Before PostgreSQL 16
    # row_number() reads one row past the LIMIT to look for peers.)
    executed = list(nodes(explain(kind, lo, hi, analyze=True, skip=skip)["Plan"]))
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


#: As a server configured to JIT-compile everything would (the service's
#: defaults compile a large batch: its estimated cost passes jit_above_cost).
JIT_EVERYTHING = {
    "jit": "on",
    "jit_above_cost": "0",
    "jit_inline_above_cost": "0",
    "jit_optimize_above_cost": "0",
}


@pytest.fixture
def jit_everything() -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_jit_available()")
        (available,) = cursor.fetchone()
    if not available:
        need("jit", "this PostgreSQL server cannot JIT-compile: pg_jit_available() is false")
    with connection.cursor() as cursor:
        for name, value in JIT_EVERYTHING.items():
            cursor.execute("SELECT set_config(%s, %s, false)", [name, value])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for name in JIT_EVERYTHING:
                cursor.execute(f"RESET {name}")


@pytest.mark.postgresql
@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["copy", "database"])
@pytest.mark.parametrize("skip", [False, True], ids=["plain", "skip-locked"])
def test_no_batch_statement_is_jit_compiled_whatever_the_server_says(
    big_table, jit_everything, kind, skip
):
    lo, hi = big_table[50_000], big_table[-1]
    unguarded = explain(kind, lo, hi, analyze=True, skip=skip, limit=BIG_LIMIT)
    assert "JIT" in unguarded, "the server did not JIT-compile even an unguarded statement"

    document = explain(kind, lo, hi, analyze=True, skip=skip, guard=True, limit=BIG_LIMIT)
    assert "JIT" not in document, document["JIT"]
    # The estimates are the batch's: the new values and their probes, BIG_LIMIT rows.
    (probe,) = [n for n in nodes(document["Plan"]) if n["Node Type"] == "Nested Loop"]
    assert probe["Actual Rows"] == BIG_LIMIT
    assert BIG_LIMIT / 2 <= probe["Plan Rows"] <= 2 * BIG_LIMIT, probe["Plan Rows"]


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
