"""The application's connections come first: on a server with max_connections = 20 the
rotator refuses a run that would leave less than the headroom free, in one line, and a
run that fits leaves the application room to connect.

A private PostgreSQL (tests/live.py ScratchServer): the shared servers must not
be reconfigured.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT, manage
from tests.live import TABLE, ScratchServer, scratch_server

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

MAX_CONNECTIONS = 20
APPLICATION = 6  # connections the application holds throughout
ROWS = 2_000


def _env(server: ScratchServer) -> dict[str, str]:
    env = dict(os.environ, DATABASE_URL=server.url(), PYTHONUNBUFFERED="1")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


@pytest.fixture(scope="module")
def server() -> Iterator[ScratchServer]:
    with scratch_server() as server:
        with server.connect() as conn:
            conn.execute(f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS}")
        server.stop()
        server.start()
        for args in (("migrate",), ("seed_tickets", "--count", str(ROWS))):
            subprocess.run(
                manage(*args, "-v", "0"), cwd=ROOT, env=_env(server), check=True, timeout=300
            )
        yield server


def _tokens(server: ScratchServer) -> list[str]:
    with server.connect() as conn:
        return [str(t) for (t,) in conn.execute(f"SELECT token FROM {TABLE} ORDER BY id")]


def _client_backends(server: ScratchServer) -> int:
    """Client connections open now, this query's own left out."""
    with server.connect() as conn:
        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND pid <> pg_backend_pid()"
        )
        return conn.execute(query).fetchone()[0]


def _rotating(server: ScratchServer, before: list[str]) -> bool:
    """The run's workers are at work: it holds connections and has rotated a row. (Its
    application_name is set only inside its transactions, so it does not show between
    throttled batches.)"""
    return _client_backends(server) > APPLICATION and _tokens(server) != before


def test_the_rotator_refuses_more_workers_than_leave_the_application_its_headroom(server):
    with contextlib.ExitStack() as application:
        held = [application.enter_context(server.connect()) for _ in range(APPLICATION)]
        with server.connect() as conn:
            reserved = conn.execute("SHOW superuser_reserved_connections").fetchone()[0]
        limit = MAX_CONNECTIONS - int(reserved)
        keep = 5  # the README's headroom: max(5, 10% of the limit)
        before = _tokens(server)

        refused = subprocess.run(
            manage("regenerate_token_async", "--workers", "32"),
            cwd=ROOT,
            env=_env(server),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode == 1, refused.stdout + refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, refused.stderr
        # In use: the application's and the command's own (and its pool's idle ones).
        found = re.fullmatch(
            r"CommandError: --workers 32 needs 34 more connections to database 'default', "
            rf"but (\d+) of its {limit} connections are free \(max_connections "
            rf"{MAX_CONNECTIONS}, {reserved} reserved, (\d+) in use\) and {keep} stay free "
            r"for the application; lower --workers to (\d+) or fewer",
            lines[0],
        )
        assert found, lines[0]
        free, in_use, fits = map(int, found.groups())
        assert APPLICATION < in_use <= APPLICATION + 3 and free == limit - in_use
        # One more than the run below takes: the command's pool may hold one more at times.
        assert fits == free - keep - 2 >= 2
        assert _tokens(server) == before

        # The refused command's session may linger a moment after it exits.
        deadline = time.monotonic() + 30
        while _client_backends(server) > APPLICATION:
            assert time.monotonic() < deadline, "the refused command's session stayed"
            time.sleep(0.05)
        # The run that fits: while it goes on (2,000 rows at 100 rows/s: 20 s), the
        # application can still connect.
        child = subprocess.Popen(
            manage("regenerate_token_async", "--workers", "1", "--max-rate", "100"),
            cwd=ROOT,
            env=_env(server),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not _rotating(server, before):
                assert child.poll() is None, child.communicate()
                assert time.monotonic() < deadline, "the workers did not connect"
                time.sleep(0.05)
            more = [application.enter_context(server.connect()) for _ in range(keep - 1)]
            for conn in held + more:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            assert child.poll() is None, "the run ended before the application connected"
            out, err = child.communicate(timeout=120)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == 0, out + err
        assert not set(before) & set(_tokens(server))
