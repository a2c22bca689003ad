"""A project of its own on PostgreSQL with Django's connection settings rotates on the primary.

tests/outside_project runs with this source tree on its path and one of
Django's own ways to connect (shop/settings_postgres.py): the built-in psycopg
pool (``True`` or a dict), persistent connections (CONN_MAX_AGE),
server-side parameter binding, and a router that sends reads to a replica.
The "replica" here is an empty database: any read routed there fails, so a
rotation that finishes read nothing from it. Each run says which connection it
writes through, and every key changes once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from tests.conftest import ROOT
from tests.live import conninfo

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True), pytest.mark.slow]

OUTSIDE = Path(__file__).resolve().parent / "outside_project"
KEYS = 600


def _server() -> psycopg.Connection:
    info = {**conninfo(), "dbname": "postgres"}
    return psycopg.connect(**info, autocommit=True)


def _url(dbname: str) -> str:
    from urllib.parse import quote

    info = conninfo()
    host = quote(str(info.get("host") or "localhost"), safe="")
    return f"postgres://{info.get('user', 'postgres')}@{host}:{info.get('port', 5432)}/{dbname}"


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    """A primary and an empty "replica" database, named after the test database."""
    base = connection.settings_dict["NAME"]
    names = (f"{base}_shop", f"{base}_shop_replica")
    with _server() as server:
        for name in names:
            server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            server.execute(f'CREATE DATABASE "{name}"')
    try:
        yield names
    finally:
        with _server() as server:
            for name in names:
                server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(variant: str, primary: str, replica: str, *args: str) -> subprocess.CompletedProcess:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="shop.settings_postgres",
        SHOP_VARIANT=variant,
        SHOP_DATABASE=_url(primary),
        SHOP_REPLICA=_url(replica),
        PYTHONPATH=os.pathsep.join([str(OUTSIDE), str(ROOT)]),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return subprocess.run(
        [sys.executable, "-W", "ignore", "manage.py", *args],
        cwd=OUTSIDE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def keys(dbname: str) -> dict[int, str]:
    with psycopg.connect(**{**conninfo(), "dbname": dbname}) as conn:
        return dict(conn.execute("SELECT id, key FROM shop_apikey").fetchall())


@pytest.mark.parametrize(
    "variant", ["pool", "pool-dict", "conn-max-age", "server-side-binding", "router"]
)
def test_django_connection_settings_rotate_on_the_primary(variant, databases):
    primary, replica = databases
    done = manage(variant, primary, replica, "migrate", "--run-syncdb", "-v", "0")
    assert done.returncode == 0, done.stderr
    with psycopg.connect(**{**conninfo(), "dbname": primary}) as conn:
        conn.execute(
            "INSERT INTO shop_apikey (owner, key) "
            "SELECT 'o' || i, md5(random()::text) FROM generate_series(1, %s) AS i",
            [KEYS],
        )
    before = keys(primary)

    done = manage(
        variant,
        primary,
        replica,
        "rotate_field",
        "shop.ApiKey.key",
        "--workers",
        "2",
        "--batch-size",
        "100",
        "-v",
        "2",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"writing through database 'default' ({primary} on " in done.stderr, done.stderr
    assert f"Rotated {KEYS:,} rows of shop.ApiKey.key" in done.stdout, done.stdout
    after = keys(primary)
    assert after.keys() == before.keys()
    assert all(after[pk] != before[pk] for pk in before)
    assert len(set(after.values())) == KEYS
