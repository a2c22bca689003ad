"""The embedded PostgreSQL as a real server: dbshell reaches it, and it stops when unused."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from asyncproj.embedded import client
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
def test_dbshell_uses_the_psql_of_pgserver_when_the_machine_has_none(tmp_path):
    done = dbshell("-Atc", "SELECT version()", path=str(tmp_path))  # an empty PATH: no psql
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("PostgreSQL 16")


def test_psql_falls_back_to_the_wheels(monkeypatch):
    monkeypatch.setattr(client.shutil, "which", lambda name: None)
    assert client.psql().endswith(os.path.join("pgserver", "pginstall", "bin", "psql"))
