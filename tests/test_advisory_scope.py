"""A shard's advisory lock is judged in the run's own database: another database on the
same server may hold a lock with the same numbers (another project, a benchmark)."""

from __future__ import annotations

import os

import psycopg
import pytest
from django.db import connection

from rotator.sql import builder_for
from rotator.sql.postgresql import ADVISORY_CLASS
from tests.live import conninfo

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db]

SHARD_ID = 7


def test_a_lock_with_the_same_numbers_in_another_database_is_not_an_owner():
    other = f"rotator_other_{os.getpid()}"
    admin = psycopg.connect(autocommit=True, **{**conninfo(), "dbname": "postgres"})
    admin.execute(f'CREATE DATABASE "{other}"')
    try:
        with psycopg.connect(autocommit=True, **{**conninfo(), "dbname": other}) as holder:
            holder.execute(
                "SELECT pg_advisory_lock(%s::int4, %s::int4)", [ADVISORY_CLASS, SHARD_ID]
            )
            assert builder_for(connection).owner_alive(connection, SHARD_ID) is False
            with psycopg.connect(autocommit=True, **conninfo()) as here:
                here.execute(
                    "SELECT pg_advisory_lock(%s::int4, %s::int4)", [ADVISORY_CLASS, SHARD_ID]
                )
                assert builder_for(connection).owner_alive(connection, SHARD_ID) is True
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{other}"')
        admin.close()
