"""A database that cannot be reached: one line with the real cause, within seconds, exit 1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import quote

import pytest
from django.db import OperationalError

from rotator.errors import RotatorError
from rotator.service import connectivity
from tests.conftest import ROOT, manage, subprocess_env

#: About 1 s on a quiet machine (interpreter and Django start-up included); the bound is loose
#: for busy CI machines, and still far below the pool's 30 s wait that it guards against.
SECONDS = 15


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def attempt(url: str) -> tuple[int, list[str], float]:
    env = dict(subprocess_env(), DATABASE_URL=url)
    start = time.monotonic()
    done = subprocess.run(
        manage("regenerate_token_async"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stderr.splitlines(), time.monotonic() - start


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        ("nonsense", "DATABASE_URL 'nonsense' is not a database URL"),
        ("postgres://postgres@127.0.0.1/", "names no database"),
        ("postgres://postgres:hunter2@127.0.0.1:{port}/db", "Connection refused"),
    ],
    ids=["nonsense", "no-database-name", "refused-port"],
)
def test_a_bad_database_url_gives_one_line_with_its_cause(url, cause):
    code, lines, seconds = attempt(url.format(port=free_port()))
    assert code == 1
    assert len(lines) == 1, lines
    assert cause in lines[0]
    assert "hunter2" not in lines[0]  # a password in the URL is never echoed
    assert lines[0].count(cause) == 1
    assert seconds < SECONDS


@pytest.mark.postgresql
@pytest.mark.django_db
def test_a_missing_database_gives_one_line_with_its_cause():
    from django.db import connection

    params = connection.get_connection_params()
    host = str(params.get("host") or "localhost").replace("/", "%2F")
    url = f"postgres://{params.get('user') or 'postgres'}@{host}:{params.get('port') or 5432}/nope"
    code, lines, seconds = attempt(url)
    assert code == 1
    assert len(lines) == 1, lines
    assert lines[0].count('database "nope" does not exist') == 1
    assert seconds < SECONDS


def test_a_reachable_database_passes_the_check(db):
    connectivity.check_reachable("default")


class PoolTimeout(Exception):
    """Stands in for psycopg_pool.PoolTimeout, which Django wraps in OperationalError."""


def pool_timeout() -> OperationalError:
    error = OperationalError("couldn't get a connection after 5.00 sec")
    error.__cause__ = PoolTimeout("couldn't get a connection after 5.00 sec")
    return error


def refused(alias: str) -> None:
    raise OperationalError('connection to server at "db", port 5432 failed: Connection refused')


def test_a_pool_timeout_mid_run_names_the_unreachable_server(monkeypatch):
    monkeypatch.setattr(connectivity, "probe", refused)
    error = RotatorError(
        "database error while rotating shop.ApiKey.key: couldn't get a connection after "
        "5.00 sec; no batch was half-applied, run the command again to resume"
    )
    error.__cause__ = pool_timeout()
    message = connectivity.explain_rotator_error("default", error)
    assert "couldn't get a connection" not in message
    assert "the server (" in message and "is unreachable" in message
    assert "Connection refused" in message
    assert message.endswith("run the command again to resume")


def test_a_lost_connection_mid_run_says_the_server_is_unreachable(monkeypatch):
    monkeypatch.setattr(connectivity, "probe", refused)
    error = RotatorError("database error while rotating x: server closed the connection; ...")
    error.__cause__ = OperationalError("server closed the connection")
    message = connectivity.explain_rotator_error("default", error)
    assert "server closed the connection, and the server (" in message
    assert "is unreachable" in message and "Connection refused" in message


def test_an_error_is_left_alone_when_the_server_answers(monkeypatch):
    monkeypatch.setattr(connectivity, "probe", lambda alias: None)
    error = RotatorError("database error while rotating x: server closed the connection; ...")
    error.__cause__ = OperationalError("server closed the connection")
    assert connectivity.explain_rotator_error("default", error) == str(error)


@pytest.mark.postgresql
def test_the_pool_gives_up_within_seconds():
    from django.conf import settings

    pool = settings.DATABASES["default"]["OPTIONS"]["pool"]
    assert pool["timeout"] <= 5


HOLDER = """
import sys, time
from asyncproj.embedded.server import socket_dir
print(socket_dir(sys.argv[1]), flush=True)
time.sleep(600)
"""


@pytest.mark.slow
@pytest.mark.postgresql
def test_a_server_lost_mid_run_ends_it_in_seconds_saying_it_is_unreachable(own_tmp):
    """A PostgreSQL server of the test's own (never a shared one), killed with SIGKILL mid-run."""
    pgdata = own_tmp / "pgdata"
    with (own_tmp / "holder.err").open("w") as holder_err:
        holder = subprocess.Popen(
            [sys.executable, "-W", "ignore", "-c", HOLDER, str(pgdata)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=holder_err,
            text=True,
        )
    try:
        assert holder.stdout is not None
        socket_dir = holder.stdout.readline().strip()
        assert socket_dir, (own_tmp / "holder.err").read_text()[-3000:]
        env = dict(
            subprocess_env(),
            DATABASE_URL=f"postgres://postgres@{quote(socket_dir, safe='')}:5432/postgres",
        )
        for args in (("migrate", "-v", "0"), ("seed_tickets", "--count", "200000")):
            subprocess.run(manage(*args), cwd=ROOT, env=env, check=True, capture_output=True)
        err = own_tmp / "err"
        with err.open("w") as stderr:
            child = subprocess.Popen(
                manage(
                    "regenerate_token_async",
                    "--workers",
                    "2",
                    "--progress-interval",
                    "0.2",
                    "--reconnect-timeout",
                    "2",
                ),
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + 60
        while "rows/s" not in err.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGKILL)
        killed = time.monotonic()
        code = child.wait(60)
        seconds = time.monotonic() - killed
    finally:
        holder.kill()
        holder.wait()
    lines = err.read_text().splitlines()
    assert code == 1
    # --reconnect-timeout 2, then pool timeouts of 5 s at most (30 s each before)
    assert seconds < SECONDS + 10
    assert "is unreachable" in lines[-1], lines[-1]
    assert not [line for line in lines if "pool" in line]  # no pool chatter
