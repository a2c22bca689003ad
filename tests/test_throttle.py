"""Throttling: --max-rate, --pause-when and --max-replication-lag, with the reason shown."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import threading
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.db.models import Sum

from rotator.command.progress import Progress
from rotator.errors import RotatorError
from rotator.models import Run, Shard
from rotator.sql.replication import replication_lag
from rotator.workers import throttle
from rotator.workers.throttle import Throttle
from tests import pausing
from tests.conftest import ROOT, fill, manage, run, subprocess_env, vendor
from tests.support import rotate_directly, tokens


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def simulated(monkeypatch: pytest.MonkeyPatch) -> tuple[Clock, list[float]]:
    """A clock that only sleeping moves; returns it and every sleep asked for."""
    clock, sleeps = Clock(), []

    async def sleep(seconds: float, stop: asyncio.Event | None) -> None:
        sleeps.append(round(seconds, 6))
        clock.now += seconds

    monkeypatch.setattr(throttle, "sleep_unless_stopped", sleep)
    return clock, sleeps


def test_the_rate_limit_books_batches_back_to_back_and_caps_their_size(simulated):
    clock, sleeps = simulated
    shown: list[str | None] = []
    limit = Throttle(max_rate=1_000, status=shown.append, clock=clock)

    async def batches() -> list[int]:
        sizes = [await limit.before_batch(100)]  # free: goes at once
        clock.now = 100.0  # the other workers ask at the same moment
        sizes.append(await limit.before_batch(100))  # waits for the first one's 0.1 s
        clock.now = 100.0
        sizes.append(await limit.before_batch(5_000))  # cut to half a second's worth
        limit.after_batch(500, 200)  # the shard ended: 300 rows' time is given back
        clock.now = 100.0
        sizes.append(await limit.before_batch(100))
        clock.now = 200.0  # long after: no wait, and no burst either
        sizes.append(await limit.before_batch(100))
        return sizes

    assert asyncio.run(batches()) == [100, 100, 500, 100, 100]
    assert sleeps == [0.1, 0.2, 0.4]
    assert shown == ["throttled: --max-rate 1,000 rows/s", None]


def test_a_pause_check_runs_once_a_second_and_the_status_follows_it(simulated):
    clock, sleeps = simulated
    answers = ["replica lag 7.2 s", "replica lag 3.1 s", None, "never asked"]
    shown: list[str | None] = []
    limit = Throttle(checks=[("test", lambda: answers.pop(0))], status=shown.append, clock=clock)

    async def three_batches() -> None:
        for _ in range(3):
            await limit.before_batch(100)

    asyncio.run(three_batches())
    assert sleeps == [1.0, 1.0]  # waited out two answers, a second apart
    assert shown == ["paused: replica lag 7.2 s", "paused: replica lag 3.1 s", None]
    assert answers == ["never asked"]  # later batches within the second reuse the answer


def test_ctrl_c_ends_a_pause_at_once():
    limit = Throttle(checks=[("test", lambda: "maintenance")], check_every=3600)

    async def paused_then_stopped() -> float:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.1, stop.set)
        started = time.monotonic()
        await asyncio.wait_for(limit.before_batch(100, stop), 30)
        return time.monotonic() - started

    assert asyncio.run(paused_then_stopped()) < 5


def test_a_check_that_hangs_is_a_reason_to_pause_and_ctrl_c_still_ends_the_wait():
    shown: list[str | None] = []
    label = "--pause-when 'tests.pausing.hang'"
    limit = Throttle(
        checks=[(label, pausing.hang)], status=shown.append, check_every=0.05, check_timeout=0.2
    )

    async def paused_then_stopped() -> float:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(1.0, stop.set)
        started = time.monotonic()
        await asyncio.wait_for(limit.before_batch(100, stop), 30)
        return time.monotonic() - started

    waited = asyncio.run(paused_then_stopped())
    assert 1.0 <= waited < 5  # the stop at 1 s ends the wait (as in the test above)
    assert shown == [f"paused: {label} did not answer in 0.2 s"]


def test_a_check_that_raises_never_shows_its_message():
    limit = Throttle(checks=[("--pause-when 'tests.pausing.leaky'", pausing.leaky)])
    with pytest.raises(RotatorError) as stopped:
        asyncio.run(limit.before_batch(100))
    assert str(stopped.value) == (
        "--pause-when 'tests.pausing.leaky' raised RuntimeError (message withheld: it may hold "
        "a secret; call it in `manage.py shell` to see it); fix it first"
    )
    assert stopped.value.__cause__ is None and stopped.value.__suppress_context__


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "tests.pausing.broken",
            # The runner adds the rows done and the command that resumes.
            "--pause-when 'tests.pausing.broken' raised ValueError (message withheld: it may "
            "hold a secret; call it in `manage.py shell` to see it); fix it first",
        ),
        (
            "tests.pausing.wrong_type",
            "--pause-when 'tests.pausing.wrong_type' returned a value of type int (withheld); "
            "it must return None or the reason to pause as a string",
        ),
    ],
)
def test_a_pause_check_that_misbehaves_stops_the_run_in_one_line(path, message):
    limit = Throttle(checks=[(f"--pause-when {path!r}", throttle.load_pause_check(path))])
    with pytest.raises(RotatorError) as stopped:
        asyncio.run(limit.before_batch(100))
    assert str(stopped.value) == message


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-rate", "0"], "--max-rate must be a number of rows per second above 0, got 0.0"),
        (["--max-rate", "-5"], "--max-rate must be a number of rows per second above 0, got -5.0"),
        (
            ["--max-replication-lag", "0"],
            "--max-replication-lag must be a number of seconds above 0, got 0.0",
        ),
        (
            ["--pause-when", "tests.pausing.NOT_CALLABLE"],
            "--pause-when 'tests.pausing.NOT_CALLABLE' is a int, not a callable; give one that "
            "returns None or the reason to pause",
        ),
        (
            ["--pause-when", "tests.pausing.nothing_here"],
            "--pause-when 'tests.pausing.nothing_here' cannot be imported (Module "
            '"tests.pausing" does not define a "nothing_here" attribute/class); give the dotted '
            "path of a callable that returns None or the reason to pause",
        ),
    ],
)
def test_bad_throttle_flags_are_refused_in_one_line_before_anything_changes(args, message):
    fill(100)
    before = tokens()
    with pytest.raises(CommandError) as refused:
        run("regenerate_token_async", *args)
    assert str(refused.value) == message
    assert tokens() == before and not Run.objects.exists()


#: The pause checks' interval in the test that runs them for real (1 s in production).
CHECK_EVERY = 0.05


def rows_done() -> int:
    return Shard.objects.aggregate(n=Sum("rows_done"))["n"] or 0


@pytest.mark.django_db(transaction=True)
def test_a_pause_when_callable_stops_every_worker_and_then_releases_them(monkeypatch):
    fill(4_000)
    monkeypatch.setattr(pausing, "REASON", "maintenance window")
    monkeypatch.setattr(pausing, "CALLS", [])
    monkeypatch.setattr(throttle, "CHECK_EVERY", CHECK_EVERY)
    paused_line = threading.Event()  # a progress line has said why the run waits
    line = Progress.line

    def line_then_tell(progress: Progress) -> None:
        line(progress)
        if progress.status == "paused: maintenance window":
            paused_line.set()

    monkeypatch.setattr(Progress, "line", line_then_tell)
    result: dict[str, object] = {}

    def rotate_in_background() -> None:
        try:
            result["report"], _, result["err"] = rotate_directly(
                workers=4,
                batch_size=100,
                pause_when="tests.pausing.check",
                progress="json",
                progress_interval=0.2,
                verbosity=2,
            )
        except BaseException as exc:
            result["error"] = exc
        finally:
            connections.close_all()

    worker = threading.Thread(target=rotate_in_background)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        # The check's own calls and the progress line, not the wall clock, say when.
        while len(pausing.CALLS) < 5 or not paused_line.is_set():
            assert worker.is_alive(), result
            assert time.monotonic() < deadline, f"{len(pausing.CALLS)} checks in 30 s"
            time.sleep(0.005)
        assert worker.is_alive() and rows_done() == 0  # nobody got past the check
        # Once every CHECK_EVERY for all four workers together, never once per worker.
        times = [at for at, _, _ in pausing.CALLS[:5]]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(gaps) == 4 and min(gaps) >= CHECK_EVERY, gaps
    finally:
        pausing.REASON = None
        worker.join(60)
    assert "error" not in result, result.get("error")
    assert result["report"].finished and rows_done() == 4_000

    records = [json.loads(line) for line in result["err"].splitlines()]
    statuses = [r["status"] for r in records if r["event"] in ("progress", "end")]
    assert statuses[0] == "paused: maintenance window"
    assert all(r["rows_done"] == 0 for r in records if r["status"] == "paused: maintenance window")
    assert statuses[-1] is None  # the last line (the end, if the run ended within one interval)
    released = {
        r["message"].split(":")[0]
        for r in records
        if r["event"] == "message" and " done, " in (r["message"] or "")
    }
    workers = 1 if vendor() == "sqlite" else 4  # SQLite has one writer
    assert released == {f"worker {n}" for n in range(workers)}
    # Each check ran between batches: never inside a transaction.
    assert all(not in_tx and autocommit for _, in_tx, autocommit in pausing.CALLS)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_max_rate_holds_within_10_percent_over_a_20_second_run():
    fill(100_000)
    out, err = run("regenerate_token_async", "--workers", "4", "--max-rate", "5000")
    finished = Run.objects.get()
    seconds = (finished.finished_at - finished.started_at).total_seconds()
    rate = finished.rows_done() / seconds
    print(f"--max-rate 5000: {finished.rows_done():,} rows in {seconds:.2f} s = {rate:,.0f} rows/s")
    assert finished.rows_done() == 100_000
    assert rate == pytest.approx(5_000, rel=0.10)


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_max_replication_lag_passes_on_postgresql_without_replicas():
    fill(500)
    assert replication_lag(connection) is None
    out, err = run("regenerate_token_async", "--max-replication-lag", "5")
    assert Run.objects.get().state == Run.State.FINISHED


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_replica_lag_pauses_the_run_and_says_why(monkeypatch):
    fill(500)
    lags = iter([7.2, 6.1])
    monkeypatch.setattr(throttle, "replication_lag", lambda connection: next(lags, None))
    out, err = run(
        "regenerate_token_async",
        "--max-replication-lag=5",
        "--progress=json",
        "--progress-interval=0.2",
    )
    statuses = [json.loads(line)["status"] for line in err.splitlines()]
    assert "paused: replica lag 7.2 s (--max-replication-lag 5)" in statuses
    assert "paused: replica lag 6.1 s (--max-replication-lag 5)" in statuses
    assert Run.objects.get().state == Run.State.FINISHED


@pytest.mark.django_db(transaction=True)
def test_max_replication_lag_is_refused_on_a_database_other_than_postgresql(monkeypatch):
    monkeypatch.setattr(connection, "vendor", "mysql")
    monkeypatch.setattr(connection, "display_name", "MySQL")
    with pytest.raises(CommandError) as refused:
        call_command("regenerate_token_async", "--max-replication-lag", "5", stdout=StringIO())
    assert str(refused.value) == (
        "--max-replication-lag 5 reads PostgreSQL's pg_stat_replication, but database "
        "'default' is MySQL; drop the flag, or pass --pause-when with a check of your own"
    )


@pytest.mark.sqlite
@pytest.mark.django_db(transaction=True)
def test_max_replication_lag_is_refused_on_sqlite():
    fill(100)
    with pytest.raises(CommandError, match=r"database 'default' is SQLite; drop the flag"):
        run("regenerate_token_async", "--max-replication-lag", "5")
    assert not Run.objects.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_hung_pause_check_is_shown_and_ctrl_c_ends_the_run_within_seconds(tmp_path):
    fill(2_000)
    before = tokens()
    mark = tmp_path / "hung"
    env = {**subprocess_env(), pausing.HANG_MARK: str(mark)}
    err = tmp_path / "err"
    with err.open("w") as stderr:
        child = subprocess.Popen(
            manage(
                "regenerate_token_async",
                "--pause-when",
                "tests.pausing.hang",
                "--progress-interval",
                "0.5",
            ),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        reason = "paused: --pause-when 'tests.pausing.hang' did not answer in 10 s"
        deadline = time.monotonic() + 60
        while reason not in err.read_text():
            assert child.poll() is None, err.read_text()
            assert time.monotonic() < deadline, f"no status line in 60 s:\n{err.read_text()}"
            time.sleep(0.1)
        assert mark.exists()
        child.send_signal(signal.SIGINT)
        started = time.monotonic()
        code = child.wait(30)
        took = time.monotonic() - started
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert code == 130, err.read_text()
    # Within a second or two (was 47 s); a loaded machine's process exit gets one more.
    assert took < 3.0, f"Ctrl-C took {took:.1f} s"
    assert "Interrupted by SIGINT: 0/2,000 rows" in err.read_text()
    assert tokens() == before
