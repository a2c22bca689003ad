"""--leaked reads any input with bounded memory: an endless line is refused by its number.

The command runs in a child process (its peak RSS is what is bounded), reading
/dev/zero (an endless line of NUL bytes) and a pipe fed an endless line of
"s" without a newline. Before the bound, /dev/zero grew to 23 GB: the child is
watched and killed once it passes ``LIMIT``, so the test fails fast instead.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, manage, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)

#: Peak RSS the child may reach (an idle manage.py is about 60-100 MB).
LIMIT = 250 << 20
TIMEOUT = 60.0


def _leaked_child(path: str) -> tuple[int, str, int]:
    """Run --leaked PATH in a child; return (exit code, stderr, peak RSS in bytes)."""
    child = subprocess.Popen(
        manage("regenerate_token_async", "--leaked", path),
        cwd=ROOT,
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watched = psutil.Process(child.pid)
    peak = 0
    deadline = time.monotonic() + TIMEOUT
    while child.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        if peak > LIMIT or time.monotonic() > deadline:
            child.kill()
            child.wait()
            pytest.fail(f"--leaked {path} reached {peak >> 20} MB RSS and was killed")
        time.sleep(0.02)
    out, err = child.communicate(timeout=TIMEOUT)
    return child.returncode, err, peak


def test_dev_zero_is_refused_with_bounded_memory():
    code, err, peak = _leaked_child("/dev/zero")
    assert code == 1, err
    assert err.strip() == (
        "CommandError: line 1 of '/dev/zero' is longer than 65,536 bytes; a dump holds one "
        "value per line: check that this is the right file"
    ), err
    assert peak < LIMIT


def test_an_endless_line_from_a_pipe_is_refused_with_bounded_memory(tmp_path: Path):
    fifo = tmp_path / "endless"
    os.mkfifo(fifo)

    def feed() -> None:
        try:
            with fifo.open("wb") as pipe:
                while True:
                    pipe.write(b"s" * 65_536)
        except (BrokenPipeError, OSError):
            return  # the reader gave up: that is the point

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    code, err, peak = _leaked_child(str(fifo))
    feeder.join(10)
    assert code == 1, err
    assert len(err.strip().splitlines()) == 1, err
    assert f"line 1 of {str(fifo)!r} is longer than 65,536 bytes" in err
    assert "ssss" not in err
    assert peak < LIMIT
