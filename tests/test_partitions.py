"""A table range-partitioned on its key: planned from its partitions' statistics, and
every row rotated exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO

import pytest
from django.core.management.base import OutputWrapper
from django.db import connection, transaction

from rotator.command.console import rotate_and_report
from rotator.service.options import Options
from rotator.sql import postgresql
from rotator.sql.postgresql import PostgreSQLBuilder
from rotator.target import resolve_target
from tests.testapp.models import Partitioned

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgresql]

TABLE = Partitioned._meta.db_table
ROWS = 40_000
PARTS = 4
LABEL = "testapp.Partitioned.token"

_DDL = [
    f"""CREATE TABLE {TABLE} (
        id bigint PRIMARY KEY, token uuid NOT NULL, rotations integer NOT NULL DEFAULT 0
    ) PARTITION BY RANGE (id)""",
    *(
        f"CREATE TABLE {TABLE}_{i} PARTITION OF {TABLE} "
        f"FOR VALUES FROM ({i * ROWS // PARTS + 1}) TO ({(i + 1) * ROWS // PARTS + 1})"
        for i in range(PARTS)
    ),
    f"""CREATE FUNCTION {TABLE}_count() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.token IS DISTINCT FROM OLD.token THEN
            NEW.rotations := OLD.rotations + 1;
        END IF;
        RETURN NEW;
    END $$""",
    f"""CREATE TRIGGER {TABLE}_count BEFORE UPDATE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION {TABLE}_count()""",
    f"INSERT INTO {TABLE} (id, token) SELECT i, gen_random_uuid() FROM generate_series(1, {ROWS})"
    " AS i",
    # As autovacuum would: it analyses the partitions, never the partitioned parent.
    f"ANALYZE {', '.join(f'{TABLE}_{i}' for i in range(PARTS))}",
]


@pytest.fixture
def partitioned() -> Iterator[None]:
    with connection.cursor() as cursor:
        for statement in _DDL:
            cursor.execute(statement)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
            cursor.execute(f"DROP FUNCTION IF EXISTS {TABLE}_count()")


def test_a_partitioned_table_is_planned_from_its_partitions_statistics(partitioned, monkeypatch):
    # Above this many rows by the statistics a plan samples instead of counting.
    monkeypatch.setattr(postgresql, "EXACT_PLAN_ROWS", ROWS // 2)
    statements: list[str] = []

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with transaction.atomic(), connection.execute_wrapper(record):
        split = PostgreSQLBuilder().split(connection, resolve_target(LABEL, "default"), 4)

    assert split.estimated, "the plan counted the whole table instead of using its statistics"
    assert split.total == ROWS
    assert not [s for s in statements if "count(*)" in s], statements
    assert len(split.uppers) == 4 and split.uppers[-1] == str(ROWS)


def test_every_row_of_a_partitioned_table_is_rotated_once(partitioned):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, token FROM {TABLE}")
        before = dict(cursor.fetchall())

    out, err = StringIO(), StringIO()
    report = rotate_and_report(
        resolve_target(LABEL, "default"),
        Options(workers=2, shards=6, batch_size=3_000),
        OutputWrapper(out),
        OutputWrapper(err),
    )

    assert report.finished, out.getvalue() + err.getvalue()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT rotations, count(*) FROM {TABLE} GROUP BY rotations")
        assert dict(cursor.fetchall()) == {1: ROWS}
        cursor.execute(f"SELECT id, token FROM {TABLE}")
        after = dict(cursor.fetchall())
    assert after.keys() == before.keys()
    assert not [pk for pk, token in after.items() if token == before[pk]]
