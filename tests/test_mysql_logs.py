"""On MariaDB no new value reaches the general log, the slow log or the binary log in
statement form, whichever way the values travel.

A private mariadbd (tests/mariadb_server.py) logs every statement (general log,
slow log with long_query_time=0) and keeps a binary log in the default MIXED
format, where statements on temporary tables and safe UPDATEs are logged as
statements. (STATEMENT format cannot log InnoDB writes at READ COMMITTED, which
the project's settings use.)
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests import mariadb_server
from tests.conftest import manage
from tests.environment import need

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

DATABASE = "rotator_logs"


def python_uuid4() -> uuid.UUID:
    """uuid4 made in Python, not recognised as ``uuid.uuid4``: takes the LOAD DATA path."""
    return uuid.uuid4()


@pytest.fixture(scope="module")
def server() -> Iterator[mariadb_server.Server]:
    reason = mariadb_server.available()
    if reason:
        need("mariadb-private", f"cannot start a private MariaDB: {reason}")
    with mariadb_server.private_server(binlog_format="MIXED") as server:
        with server.connect() as conn:
            conn.cursor().execute(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4")
        yield server


def _manage(server: mariadb_server.Server, *args: str, database: str = DATABASE) -> str:
    env = {
        **os.environ,
        "DATABASE_URL": server.url(database),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONUNBUFFERED": "1",
    }
    # tests.settings holds test apps whose models are wrong on purpose (system check errors).
    checks = [] if args[0] == "shell" else ["--skip-checks"]
    proc = subprocess.run(
        manage(*args, *checks), env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _column(server: mariadb_server.Server, sql: str) -> list[str]:
    with server.connect(DATABASE) as conn:
        cur = conn.cursor()
        cur.execute(sql)
        return [str(row[0]) for row in cur.fetchall()]


def _forms(value: str) -> set[str]:
    """Every way a value could be spelled in a log."""
    forms = {value, value.encode().hex()}
    if len(value) == 36 and value.count("-") == 4:
        bare = value.replace("-", "")
        forms |= {bare, bare.upper(), value.upper()}
    return forms


def test_no_new_value_reaches_the_general_slow_or_binary_log(server):
    _manage(server, "migrate", "--run-syncdb", "-v", "0")
    _manage(server, "seed_tickets", "--count", "3000")
    _manage(
        server,
        "shell",
        "-c",
        "from tests.testapp.models import ApiKey\n"
        "ApiKey.objects.bulk_create(ApiKey(label=str(i)) for i in range(1000))",
    )
    old_tokens = _column(server, "SELECT token FROM tickets_ticket")

    new: list[str] = []
    # uuid4 made by the server (RANDOM_BYTES), then by Python through LOAD DATA,
    # then strings by Python through LOAD DATA, with a uuid primary key.
    _manage(server, "rotate_field", "tickets.Ticket.token", "--workers", "2")
    new += _column(server, "SELECT token FROM tickets_ticket")
    generator = f"{__name__}.python_uuid4"
    _manage(server, "rotate_field", "tickets.Ticket.token", "--generator", generator, "--restart")
    new += _column(server, "SELECT token FROM tickets_ticket")
    _manage(server, "rotate_field", "testapp.ApiKey.key", "--workers", "2")
    new += _column(server, "SELECT `key` FROM testapp_apikey")
    assert len(set(new)) == 3000 + 3000 + 1000
    assert not set(new) & set(old_tokens)

    general = server.general_log.read_text(errors="replace")
    slow = server.slow_log.read_text(errors="replace")
    binlog = server.binlog_text()
    # The logs are on and would show a value sent as SQL text: seeding sent
    # the old tokens that way, and the rotator's statements are there too.
    assert any(token in general for token in old_tokens[:10])
    assert "RANDOM_BYTES" in general and "LOAD DATA LOCAL INFILE" in general
    assert "STRAIGHT_JOIN `tickets_ticket` AS t ON" in slow  # the batch's UPDATE
    assert "rotator_shard" in binlog

    for name, text in (("general log", general), ("slow log", slow), ("binary log", binlog)):
        leaked = [value for value in new if any(form in text for form in _forms(value))]
        assert not leaked, f"{len(leaked)} new values in the {name}"
    # Statement-form LOAD DATA would carry the values in the binary log.
    assert "Execute_load_query" not in binlog


LEAKED_DATABASE = "rotator_leaked_logs"


def _leaked(server: mariadb_server.Server, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": server.url(LEAKED_DATABASE), "PYTHONUNBUFFERED": "1"}
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    return subprocess.run(
        manage("rotate_field", *args, "--skip-checks"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_no_leaked_dump_value_reaches_the_general_or_slow_log(server, tmp_path):
    """--leaked loads the dump by LOAD DATA from a pipe: no value in any statement."""
    with server.connect() as conn:
        conn.cursor().execute(f"CREATE DATABASE {LEAKED_DATABASE} CHARACTER SET utf8mb4")
    _manage(server, "migrate", "--run-syncdb", "-v", "0", database=LEAKED_DATABASE)
    _manage(server, "seed_tickets", "--count", "500", database=LEAKED_DATABASE)
    with server.connect(LEAKED_DATABASE) as conn:
        cur = conn.cursor()
        cur.execute("SELECT token FROM tickets_ticket")
        tokens = [str(row[0]) for row in cur.fetchall()]
    # What the log holds before --leaked (seeding sent the tokens as SQL text).
    general_before = server.general_log.stat().st_size
    slow_before = server.slow_log.stat().st_size

    dump = tmp_path / "dump.txt"
    dump.write_text("".join(f"{t}\n" for t in tokens[:300]) + f"{uuid.uuid4()}\n")
    found = _leaked(server, "tickets.Ticket.token", "--leaked", str(dump))
    assert found.returncode == 1, found.stdout + found.stderr
    assert found.stdout.startswith("300 of the 301 leaked values"), found.stdout
    fresh = dump.read_text().splitlines()

    general = server.general_log.read_bytes()[general_before:].decode(errors="replace")
    slow = server.slow_log.read_bytes()[slow_before:].decode(errors="replace")
    # Counts and flags only: a failing test must not print the log (it may hold values).
    for name, text in (("general log", general), ("slow log", slow)):
        logged = sum(1 for value in fresh if any(form in text for form in _forms(value)))
        assert logged == 0, f"{logged} of {len(fresh)} dump values in the {name}"
    # The logs were on and saw --leaked's statements: "no value" proves something.
    seen = "rotator_leaked" in general and "rotator_leaked" in slow
    assert seen, "--leaked's statements are not in the logs"
    loaded = "LOAD DATA LOCAL INFILE" in general
    assert loaded, "--leaked did not load the dump by LOAD DATA"
