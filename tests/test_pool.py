"""A rotation gives back every pooled connection it took (Django 5.1+'s psycopg pool)."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.conftest import fill, run

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]


def test_runs_one_after_another_do_not_grow_the_pool():
    if getattr(connection, "pool", None) is None:
        pytest.skip("the database has no connection pool (Django < 5.1 or OPTIONS without pool)")
    fill(500)
    run("regenerate_token_async", "--workers", "2")
    size = connection.pool.get_stats()["pool_size"]
    for _ in range(3):
        run("regenerate_token_async", "--workers", "2", "--restart", "--yes")
    assert connection.pool.get_stats()["pool_size"] == size
