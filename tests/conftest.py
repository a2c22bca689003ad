from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from tests import environment, seeded
from tickets.models import Ticket

ROOT = Path(__file__).resolve().parent.parent
# The tests' short settle (tests/settings.py) for every manage.py child too: a finished
# run otherwise waits 30 s for write-backs (asyncproj/settings.py reads this variable).
os.environ.setdefault("ROTATOR_SETTLE_SECONDS", "0.2")
VENDORS = {
    "asyncproj.embedded": "postgresql",
    "django.db.backends.postgresql": "postgresql",
    "django.db.backends.sqlite3": "sqlite",
    "django.db.backends.mysql": "mysql",
}


def vendor() -> str:
    return VENDORS.get(settings.DATABASES["default"]["ENGINE"], "other")


def pytest_configure(config: pytest.Config) -> None:
    environment.required()  # a misspelt ROTATOR_REQUIRE stops the run before any test


def pytest_runtest_setup(item: pytest.Item) -> None:
    for name in ("postgresql", "sqlite", "mysql"):
        if item.get_closest_marker(name) and vendor() != name:
            pytest.skip(f"needs {name}; this run is on {vendor()}")


class Tty(StringIO):
    def isatty(self) -> bool:
        return True


def run(*args: str, tty: bool = False, **options: object) -> tuple[str, str]:
    """call_command with captured (stdout, stderr)."""
    out, err = StringIO(), (Tty() if tty else StringIO())
    call_command(*args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def fill(count: int) -> None:
    """``count`` new tickets; big tables are copied from one seeded per session."""
    seeded.fill(count)


def rows() -> dict[int, tuple]:
    """Every ticket as id -> (token, subject, created_at)."""
    return {
        pk: (token, subject, created)
        for pk, token, subject, created in Ticket.objects.order_by("pk").values_list(
            "pk", "token", "subject", "created_at"
        )
    }


def subprocess_env() -> dict[str, str]:
    """Environment for a manage.py subprocess that talks to the test database."""
    db = connection.settings_dict
    if vendor() == "sqlite":
        url = f"sqlite:///{db['NAME']}"
    elif vendor() == "mysql":
        params = connection.get_connection_params()
        host = quote(str(params.get("host") or "127.0.0.1"), safe="")
        port = params.get("port") or 3306
        user = quote(str(params.get("user") or "root"), safe="")
        password = params.get("password") or params.get("passwd") or ""
        auth = f"{user}:{quote(str(password), safe='')}" if password else user
        url = f"mysql://{auth}@{host}:{port}/{params['database']}"
    else:
        params = connection.get_connection_params()
        host = quote(str(params.get("host") or "localhost"), safe="")
        port = params.get("port") or 5432
        user = params.get("user") or "postgres"
        url = f"postgres://{user}@{host}:{port}/{params['dbname']}"
    env = dict(os.environ, DATABASE_URL=url, PYTHONUNBUFFERED="1")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


# Other sessions of the test database inside a transaction. The test process's own
# spare pool connections are idle, outside any.
OPEN_TRANSACTIONS = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND backend_type = 'client backend' AND state <> 'idle' AND pid <> pg_backend_pid()",
    "mysql": "SELECT count(*) FROM information_schema.processlist "
    "WHERE db = DATABASE() AND id <> CONNECTION_ID() AND (command <> 'Sleep' "
    "OR id IN (SELECT trx_mysql_thread_id FROM information_schema.innodb_trx))",
}


def wait_for_other_transactions_to_end(seconds: float = 45) -> None:
    """Wait until no other session of the test database is inside a transaction. A child
    killed with -9 is gone at once, but its server session may still run a COMMIT the
    child sent before it died: read the counter and the checkpoints together only once
    nothing can commit any more."""
    query = OPEN_TRANSACTIONS.get(connection.vendor)
    if query is None:  # SQLite: no server, a dead process's commit is over with it
        return
    deadline = time.monotonic() + seconds
    while True:
        with connection.cursor() as cursor:
            cursor.execute(query)
            if not cursor.fetchone()[0]:
                return
        assert time.monotonic() < deadline, f"a transaction still open after {seconds} s"
        time.sleep(0.01)


def manage(*args: str) -> list[str]:
    return [sys.executable, "-W", "ignore", str(ROOT / "manage.py"), *args]


@pytest.fixture
def own_tmp() -> Iterator[Path]:
    """A temporary directory outside pytest's tmp_path.

    Every pytest session on the machine prunes old /tmp/pytest-of-<user>/ directories,
    so with several sessions running at once a long test's tmp_path can vanish mid-test.
    """
    with tempfile.TemporaryDirectory(prefix="rotator-test-", ignore_cleanup_errors=True) as path:
        yield Path(path)


@pytest.fixture
def counted() -> Iterator[None]:
    """The database counts every token change per row (tests/counting.py)."""
    from tests import counting

    counting.install()
    try:
        yield
    finally:
        counting.uninstall()
