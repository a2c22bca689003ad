"""The embedded PostgreSQL as a real server: dbshell reaches it, and it stops when unused."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from asyncproj.embedded import client
from asyncproj.embedded.processes import alive
from tests.conftest import ROOT, manage

embedded = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "asyncproj.embedded",
    reason="needs the embedded PostgreSQL (DATABASE_URL unset)",
)


def dbshell(*psql_args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")
    }
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        manage("dbshell", "--", *psql_args),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@embedded
def test_dbshell_reaches_the_embedded_server():
    done = dbshell("-Atc", "SHOW data_directory")
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == (ROOT / ".pgdata").resolve()


@embedded
def test_dbshell_uses_the_psql_of_pgserver_when_the_machine_has_none(own_tmp):
    done = dbshell("-Atc", "SELECT version()", path=str(own_tmp))  # an empty PATH: no psql
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("PostgreSQL 16")


def test_psql_falls_back_to_the_wheels(monkeypatch):
    monkeypatch.setattr(client.shutil, "which", lambda name: None)
    assert client.psql().endswith(os.path.join("pgserver", "pginstall", "bin", "psql"))


USER = """
import sys, time
from asyncproj.embedded.server import socket_dir
print(socket_dir(sys.argv[1]), flush=True)
time.sleep(300)
"""


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


@pytest.mark.slow
@pytest.mark.postgresql
def test_the_server_stops_after_a_kill_9_of_its_last_user(own_tmp):
    """A server of its own (not the suite's): its only user is killed with SIGKILL."""
    pgdata = own_tmp / "pgdata"
    user = subprocess.Popen(
        [sys.executable, "-W", "ignore", "-c", USER, str(pgdata)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert user.stdout is not None
        assert user.stdout.readline().strip()  # the server is up
        postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
        assert wait_until((pgdata / ".watchdog.pid").exists, 10)
        watchdog = int((pgdata / ".watchdog.pid").read_text())
        assert alive(postmaster) and alive(watchdog)
    finally:
        user.kill()
        user.wait()
    assert wait_until(lambda: not alive(postmaster), 20), "the embedded server outlived its users"
    assert wait_until(lambda: not alive(watchdog), 5), "the watchdog outlived its server"
