"""Through PgBouncer (transaction and session pooling) the rotator rotates every row once.

A private PgBouncer (tests/pgbouncer.py) with three server connections sits in
front of the test database; ``manage.py regenerate_token_async`` runs through
it as a child process, killed (-9) or frozen (SIGSTOP) part-way, and resumed.
The database counts every token change per row (tests/counting.py). Afterwards
the server connections PgBouncer keeps for its next clients carry nothing of
the rotator: no application_name, no advisory lock.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

from rotator.models import Run, Shard
from rotator.sql.postgresql import ADVISORY_CLASS
from tests import counting
from tests.conftest import ROOT, fill, manage, rows, subprocess_env
from tests.live import connect
from tests.pgbouncer import Bouncer, pgbouncer
from tests.test_resume import Child, rows_done

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgresql]

TIMEOUT = 60


@pytest.fixture(params=["transaction", "session"])
def bouncer(request: pytest.FixtureRequest) -> Iterator[Bouncer]:
    # Session pooling holds a server connection per client (4 workers, the watcher,
    # the command); transaction pooling shares three among them.
    with pgbouncer(request.param, pool_size=3 if request.param == "transaction" else 8) as running:
        yield running


@pytest.fixture
def tickets() -> Iterator[Callable[[int], dict[int, tuple]]]:
    def seed(n: int) -> dict[int, tuple]:
        fill(n)
        counting.install()
        return rows()

    try:
        yield seed
    finally:
        counting.uninstall()


@pytest.fixture
def spawn(own_tmp: Path) -> Iterator[Callable[..., Child]]:
    """``spawn(*args, url=..., **env)``: regenerate_token_async in a child process."""
    children: list[Child] = []

    def spawn(*args: str, url: str | None = None, **env: str) -> Child:
        n = len(children)
        stdout, stderr = own_tmp / f"{n}.out", own_tmp / f"{n}.err"
        environ = subprocess_env()
        if url is not None:
            environ["DATABASE_URL"] = url
        environ.update(env)
        with stdout.open("w") as out, stderr.open("w") as err:
            proc = subprocess.Popen(
                manage("regenerate_token_async", *args),
                cwd=ROOT,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        children.append(Child(proc, stdout, stderr))
        return children[-1]

    try:
        yield spawn
    finally:
        for child in children:
            if child.proc.poll() is None:
                child.proc.kill()
            child.proc.wait(TIMEOUT)


def exactly_once(before: dict[int, tuple]) -> None:
    after = rows()
    assert counting.histogram() == {1: len(before)}
    assert all(after[pk][0] != before[pk][0] for pk in before)
    tally = counting.tally()
    assert tally.exact and tally.finished, tally
    assert set(Shard.objects.values_list("state", flat=True)) == {Shard.State.DONE}


def rotator_state_left() -> tuple[int, int, int]:
    """(server sessions of the test database, of them named by the rotator, rotator
    advisory locks), as the server sees them."""
    name = connection.settings_dict["NAME"]
    with connect() as conn:
        sessions, named = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE application_name LIKE 'rotator%%') "
            "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        ).fetchone()
        (locks,) = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s::oid",
            [ADVISORY_CLASS],
        ).fetchone()
    return sessions, named, locks


def wait_for_rows(child: Child, at_least: int) -> int:
    deadline = time.monotonic() + TIMEOUT
    while (done := rows_done()) < at_least:
        assert child.proc.poll() is None, f"exited {child.proc.returncode}:\n{child.err}"
        assert time.monotonic() < deadline, f"{done:,} rows after {TIMEOUT} s\n{child.err}"
        time.sleep(0.01)
    return done


def wait_for_output(child: Child, text: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while text not in child.err:
        assert child.proc.poll() is None, f"exited before printing {text!r}:\n{child.err}"
        assert time.monotonic() < deadline, f"no {text!r} after {TIMEOUT} s\n{child.err}"
        time.sleep(0.01)


def assert_no_session_state_left_behind() -> None:
    # Django's pool in the child closed; PgBouncer keeps its server connections open.
    sessions, named, locks = rotator_state_left()
    assert sessions >= 1, "PgBouncer kept no server connection: nothing was checked"
    assert (named, locks) == (0, 0), f"{named} named rotator sessions, {locks} advisory locks"


def test_a_rotation_through_pgbouncer_leaves_nothing_on_its_server_connections(
    bouncer, tickets, spawn
):
    before = tickets(3_000)
    child = spawn(
        "--workers",
        "4",
        "--batch-size",
        "100",
        "-v",
        "2",
        url=bouncer.url(connection.settings_dict["NAME"]),
    )
    assert child.wait() == 0, child.err + bouncer.log
    assert "Rotated 3,000 rows" in child.out, child.out
    exactly_once(before)
    assert_no_session_state_left_behind()
    # Found out, not configured: the startup's backend id is PgBouncer's own.
    assert re.search(
        r"writing through database 'default' \(.* on 127\.0\.0\.1:\d+, through a pooler\); "
        r"owners' liveness: a 60 s lease on the database clock$",
        child.err,
        re.M,
    ), child.err


@pytest.mark.slow
def test_kill_9_through_pgbouncer_then_a_prompt_resume_rotates_every_row_once(
    bouncer, tickets, spawn
):
    total = 100_000
    before = tickets(total)
    url = bouncer.url(connection.settings_dict["NAME"])
    args = ("--workers", "4", "--batch-size", "1000", "-v", "2")
    first = spawn(*args, url=url)
    wait_for_rows(first, total // 3)
    first.kill(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    tally = counting.tally()
    assert tally.exact and tally.running, tally  # its shards were left running

    started = time.monotonic()
    second = spawn(*args, url=url)
    assert second.wait() == 0, second.err
    # The dead owner's pid is gone: its shards are taken at once, not after the lease.
    assert time.monotonic() - started < 30, second.err
    assert re.search(r"took over shard \d+ from .* \(its process is gone\)", second.err)
    assert "finished." in second.out
    exactly_once(before)
    assert Run.objects.count() == 1
    assert_no_session_state_left_behind()


LEASE = 5  # seconds: ROTATOR_LEASE_SECONDS for the frozen-owner tests


@pytest.mark.slow
@pytest.mark.parametrize("through", ["direct", "pgbouncer"])
def test_a_frozen_owner_loses_its_shards_after_the_lease_and_is_fenced_out_on_waking(
    through, tickets, spawn
):
    total = 20_000
    before = tickets(total)
    with pgbouncer("transaction") if through == "pgbouncer" else _direct() as bouncer:
        url = bouncer.url(connection.settings_dict["NAME"]) if bouncer else None
        env = {"ROTATOR_LEASE_SECONDS": str(LEASE)}
        # --max-rate: the owner spends most of its time between batches, where it freezes.
        owner = spawn(
            "--workers", "2", "--batch-size", "200", "--max-rate", "2000", "-v", "2", url=url, **env
        )
        wait_for_rows(owner, total // 10)
        owner.kill(signal.SIGSTOP)
        frozen_at = rows_done()
        # Its session (and advisory lock) is alive; only the lease can expire.
        time.sleep(LEASE + 1)
        claimant = spawn(
            "--workers", "2", "--batch-size", "200", "--max-rate", "4000", "-v", "2", url=url, **env
        )
        wait_for_output(claimant, "took over shard")
        # Woken while the claimant works its shards: the owner's next batch is fenced out.
        owner.kill(signal.SIGCONT)
        assert claimant.wait() == 0, claimant.err
        assert re.search(
            rf"took over shard \d+ from .* \(its lease expired \({LEASE} s\)\)", claimant.err
        ), claimant.err
        owner.wait()
        # A shard the woken owner found still its own (fenced, handed back, claimed
        # again) it finished itself; every row once either way.
        assert rows_done() == total > frozen_at
        exactly_once(before)
        assert re.search(r"shard \d+ lost: taken over, or its lease expired", owner.err), owner.err
        assert "Traceback" not in owner.err, owner.err


class _direct:
    """No pooler: the child talks to the test database as the suite does."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
