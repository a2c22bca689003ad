"""Skip a test whose environment is missing, unless CI says it must be there.

``ROTATOR_REQUIRE`` lists, comma-separated, what a run expects the machine to
have; a test that finds one of those missing fails instead of skipping, so a
CI run cannot go green by quietly not testing something. Unset (a developer's
machine), every one of them is a skip with its reason. Vendor markers
(``@pytest.mark.postgresql`` on SQLite) are not environment: they always skip.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

VARIABLE = "ROTATOR_REQUIRE"
#: Every name ROTATOR_REQUIRE may hold, and what it stands for.
KNOWN = {
    "server-log": "the PostgreSQL server log is a readable file (tests/test_server_log.py)",
    "unshare": "unshare --pid works: PID namespaces (tests/test_ownership.py)",
    "chromium": "Debian's chromium and chromium-driver (tests/test_browser.py)",
    "jit": "the PostgreSQL server can JIT-compile: pg_jit_available() (tests/test_sql.py)",
    "pgbouncer": "Debian's pgbouncer to put a pooler in front of PostgreSQL (tests/test_pooler.py)",
    "mariadb-private": "mariadbd to start a private MariaDB server (tests/test_mysql_logs.py)",
    "celery": "the celery extra, Redis and RabbitMQ at 127.0.0.1 (tests/test_celery.py)",
}


def required() -> set[str]:
    names = {name.strip() for name in os.environ.get(VARIABLE, "").split(",") if name.strip()}
    unknown = sorted(names - KNOWN.keys())
    if unknown:
        raise pytest.UsageError(
            f"{VARIABLE} names {', '.join(map(repr, unknown))}, which no test needs; "
            f"expected some of {', '.join(sorted(KNOWN))}"
        )
    return names


def need(name: str, reason: str) -> NoReturn:
    """The test cannot run here because ``reason``: fail if ``name`` is required, else skip."""
    assert name in KNOWN, f"{name!r} is not in tests.environment.KNOWN"
    if name in required():
        pytest.fail(f"{reason} ({VARIABLE} requires {name!r})", pytrace=False)
    pytest.skip(reason)
