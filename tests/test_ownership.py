"""Shard ownership holds across containers: no pid or clock guesses.

Two ``manage.py`` processes work the same run, each in a PID namespace of its
own (``unshare -pf --mount-proc``), so both are pid 1 on one hostname: two
containers of one pod, say. Neither may take a shard the other is working.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db.models import Sum

from rotator.models import Shard
from tests import counting
from tests.conftest import ROOT, fill, manage, subprocess_env
from tests.environment import need

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgresql, pytest.mark.slow]

ROWS = 100_000
TIMEOUT = 45
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
COMMAND = manage(
    "regenerate_token_async",
    "--workers",
    "2",
    "--batch-size",
    "250",
    "--progress-interval",
    "0.5",
    "-v",
    "2",
)
TAKE_OVERS = re.compile(r"took over shard \d+|lost: taken over")


def pid_namespaces() -> str | None:
    """Why a process cannot be pid 1 of a PID namespace of its own here, or None."""
    try:
        probe = subprocess.run(
            [*UNSHARE, "sh", "-c", "echo $$"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare is not available: {exc}"
    if probe.returncode != 0 or probe.stdout.strip() != "1":
        return f"unshare --pid is not permitted: {probe.stderr.strip() or probe.stdout.strip()}"
    return None


@pytest.fixture
def containers(tmp_path: Path) -> Iterator[Callable[[], tuple[subprocess.Popen, Path, Path]]]:
    reason = pid_namespaces()
    if reason:
        need("unshare", reason)
    started: list[subprocess.Popen] = []

    def start() -> tuple[subprocess.Popen, Path, Path]:
        n = len(started)
        out, err = tmp_path / f"{n}.out", tmp_path / f"{n}.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            started.append(
                subprocess.Popen(
                    [*UNSHARE, *COMMAND],
                    cwd=ROOT,
                    env=subprocess_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                    start_new_session=True,
                )
            )
        return started[-1], out, err

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()  # --kill-child takes the namespace's pid 1 with it
            proc.wait(TIMEOUT)


def rows_done() -> int:
    return Shard.objects.aggregate(n=Sum("rows_done"))["n"] or 0


def rotated(out: str) -> int:
    found = re.search(r"^Rotated ([\d,]+) rows", out, re.M)
    assert found, out
    return int(found.group(1).replace(",", ""))


def test_two_pid_1_processes_on_one_host_never_take_each_others_shards(containers):
    fill(ROWS)
    counting.install()
    try:
        first, first_out, first_err = containers()
        deadline = time.monotonic() + TIMEOUT
        while rows_done() == 0:  # planned and working: the second one joins its run
            assert first.poll() is None, first_out.read_text() + first_err.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        second, second_out, second_err = containers()

        assert first.wait(TIMEOUT) == 0, first_err.read_text()
        assert second.wait(TIMEOUT) == 0, second_err.read_text()
        outputs = [p.read_text() for p in (first_out, first_err, second_out, second_err)]
        take_overs = [m for text in outputs for m in TAKE_OVERS.findall(text)]
        assert take_overs == [], f"{len(take_overs)} take-overs:\n" + "\n".join(outputs)
        # Both really worked the run at the same time.
        assert rotated(outputs[0]) > 0 and rotated(outputs[2]) > 0
        assert rotated(outputs[0]) + rotated(outputs[2]) == ROWS
        assert counting.histogram() == {1: ROWS}
        assert set(Shard.objects.values_list("state", flat=True)) == {Shard.State.DONE}
    finally:
        counting.uninstall()
