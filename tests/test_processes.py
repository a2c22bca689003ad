"""pid_alive() asks psutil, never os.kill (which ends the process on Windows); zombies are dead."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from asyncproj.embedded.processes import alive
from rotator.workers.processes import pid_alive


def wait_until_zombie(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"pid {pid} not a zombie after {timeout} s"
        time.sleep(0.001)


@pytest.fixture(params=[pid_alive, alive], ids=["rotator", "embedded"])
def is_alive(request):
    return request.param


def test_a_running_process_is_alive(is_alive):
    assert is_alive(os.getpid())


def test_psutil_decides_not_os_kill(is_alive, monkeypatch):
    """psutil.pid_exists is portable; os.kill(pid, 0) would end the process on Windows."""
    monkeypatch.setattr(psutil, "pid_exists", lambda pid: False)
    assert not is_alive(os.getpid())


def test_a_killed_unreaped_process_is_dead(is_alive):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert is_alive(child.pid)
        child.kill()
        wait_until_zombie(child.pid)  # killed, not yet reaped
        assert not is_alive(child.pid)
    finally:
        child.wait()
    assert not is_alive(child.pid)
