"""The progress display on its own, on a simulated clock: modes, estimates, stalls, status."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import struct
import termios
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.core.management.base import OutputWrapper

from rotator.command.bar import TqdmFile, columns
from rotator.command.progress import Progress
from rotator.errors import RotatorError
from rotator.service.rotation import Options

FIELDS = {
    "time",
    "run",
    "rows_done",
    "rows_total",
    "percent",
    "rows_per_s",
    "remaining_s",
    "elapsed_s",
    "workers",
    "status",
    "event",
    "message",
}


class Clock:
    """Monotonic and wall time that move only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.start = datetime(2026, 11, 23, 17, 0, 0, tzinfo=UTC)

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return self.start + timedelta(seconds=self.now - 1000.0)


class Terminal(io.StringIO):
    """A terminal as far as the bar can tell (its width comes from COLUMNS)."""

    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


def progress(mode: str, clock: Clock, stream: io.StringIO, **kwargs: object) -> Progress:
    options = {"total": 24_000, "initial": 0, "verbosity": 2, "interval": 5.0}
    options.update(kwargs)
    return Progress(
        OutputWrapper(stream),
        mode=mode,
        run_id=7,
        workers=4,
        clock=clock,
        wall=clock.wall,
        **options,  # type: ignore[arg-type]
    )


def test_the_time_remaining_waits_until_it_means_something():
    # A 24-second run whose first second is slow (small first batches): the
    # first second's rate would promise far more than 24 s.
    clock, out = Clock(), io.StringIO()
    shown = progress("plain", clock, out, interval=1.0)
    clock.now += 1.0
    shown.advance(100)
    assert shown.remaining() is None
    shown.tick()
    assert out.getvalue().splitlines()[-1].endswith("estimating time remaining")
    for _ in range(23):
        clock.now += 1.0
        shown.advance(1_039)
        shown.tick()
        if clock.now - 1000.0 >= 3.0:
            left = 24.0 - (clock.now - 1000.0)
            assert shown.remaining() == pytest.approx(left, abs=1.5)
    shown.advance(3)
    assert shown.done == 24_000 and shown.remaining() == 0.0


def test_a_stall_slows_the_rate_and_grows_the_estimate_then_says_so():
    clock, out = Clock(), io.StringIO()
    shown = progress("plain", clock, out, total=100_000)
    for _ in range(10):
        clock.now += 1.0
        shown.advance(1_000)
        shown.tick()
    before = shown.remaining()
    assert before == pytest.approx(90.0, rel=0.05)
    clock.now += 10.0
    shown.tick()
    assert shown.remaining() > before * 1.5  # throttling and stalls count
    clock.now += 31.0
    shown.tick()
    assert shown.remaining() is None
    assert out.getvalue().splitlines()[-1].endswith("no estimate: no rows in the last 30 s")


def test_a_stalled_run_still_writes_a_line_every_interval_with_its_reason():
    clock, out = Clock(), io.StringIO()
    shown = progress("plain", clock, out, interval=5.0)
    clock.now += 1.0
    shown.advance(500)
    shown.set_status("waiting 12 s on a lock held by pid 4242", key="w0")
    for _ in range(20):
        clock.now += 1.0
        shown.tick()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4  # at 5, 10, 15 and 20 s
    assert lines[0] == (
        "2026-11-23T17:00:05Z run 7: 500/24,000 rows (2.1%), 0 rows/s, estimating time remaining; "
        "waiting 12 s on a lock held by pid 4242"
    )
    assert lines[-1].startswith("2026-11-23T17:00:20Z run 7: 500/24,000 rows (2.1%), ")


def test_statuses_of_several_sources_show_together_and_clear_one_by_one():
    clock, out = Clock(), io.StringIO()
    shown = progress("plain", clock, out)
    shown.set_status("paused: replica lag 7.2 s", key="throttle")
    shown.set_status("waiting 3 s on a lock held by pid 4242", key="w1")
    assert shown.status == "paused: replica lag 7.2 s; waiting 3 s on a lock held by pid 4242"
    shown.set_status(None, key="throttle")
    assert shown.status == "waiting 3 s on a lock held by pid 4242"
    shown.set_status(None, key="w1")
    assert shown.status is None


def test_json_lines_parse_and_each_has_every_field():
    clock, out = Clock(), io.StringIO()
    shown = progress("json", clock, out, interval=1.0)
    for second in range(6):
        clock.now += 1.0
        shown.advance(2_000)
        if second == 3:
            shown.set_status("throttled: --max-rate 2,000 rows/s", key="throttle")
        shown.tick()
    shown.message("worker 1: took over shard 3", level=1)
    shown.close()
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(records) == 8
    assert all(set(record) == FIELDS for record in records)
    assert [r["event"] for r in records] == ["progress"] * 6 + ["message", "end"]
    first, last = records[0], records[5]
    assert first["time"] == "2026-11-23T17:00:01Z" and first["run"] == 7
    assert (first["remaining_s"], first["status"]) == (None, None)
    assert (last["rows_done"], last["rows_total"], last["workers"]) == (12_000, 24_000, 4)
    assert (last["rows_per_s"], last["remaining_s"]) == (2_000, 6)
    assert last["status"] == "throttled: --max-rate 2,000 rows/s"
    assert records[6]["message"] == "worker 1: took over shard 3"


def test_no_line_has_trailing_spaces_in_any_mode():
    for mode in ("bar", "plain", "json", "none"):
        clock, out = Clock(), Terminal()
        shown = progress(mode, clock, out, interval=1.0)
        for _ in range(4):
            clock.now += 1.0
            shown.advance(1_000)
            shown.message("worker 0: shard 1 done   ", level=2)
            shown.tick()
        shown.close()
        for piece in re.split(r"[\r\n]", out.getvalue().replace("\x1b[K", "")):
            assert piece == piece.rstrip(), (mode, piece)


@pytest.mark.parametrize("width", [30, 50, 80, 120, 200])
def test_every_bar_frame_fits_the_terminal(width, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(width))
    clock, out = Clock(), Terminal()
    shown = progress("bar", clock, out, total=1_000_000, desc="tickets.Ticket.token")
    for step in range(10):
        clock.now += 1.0
        shown.advance(100_000)
        if step == 5:
            shown.set_status("throttled: --max-rate 5,000 rows/s", key="throttle")
        shown.tick()
    shown.close()
    text = out.getvalue()
    frames = [f for f in re.split(r"[\r\n]", text.replace("\x1b[K", "")) if f]
    assert frames and all(len(frame) < width for frame in frames)
    assert "█" in text  # unicode blocks: the stream's encoding reached tqdm
    assert text.count("\n") == 1 and text.endswith("\x1b[K\n")
    if width >= 80:
        assert "1,000,000/1,000,000" in frames[-1]
        assert frames[-2].endswith(" throttled: --max-rate 5,000 rows/s")
        assert "throttled" not in frames[-1]  # the closed bar says how it ended
    if width >= 200:
        assert frames[-1].startswith("tickets.Ticket.token: 100%|")


def test_the_tqdm_file_passes_the_real_terminal_through_django_output_wrapper():
    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 93, 0, 0))
        with open(slave, "w", encoding="utf-8", closefd=False) as tty:
            wrapped = TqdmFile(OutputWrapper(tty))
            assert wrapped.fileno() == slave
            assert wrapped.isatty() is True
            assert wrapped.encoding == "utf-8"
            assert columns(wrapped) == 93
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 61, 0, 0))
            assert columns(wrapped) == 61  # read again at every frame: resizes are followed
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("interval", [-1, 0, float("nan"), float("inf")])
def test_a_progress_interval_that_is_not_a_positive_number_is_refused(interval):
    with pytest.raises(RotatorError, match=r"^--progress-interval must be a number of seconds"):
        Options(progress_interval=interval).validate()


@pytest.mark.django_db
def test_the_command_refuses_a_negative_progress_interval_in_one_line():
    with pytest.raises(CommandError) as refused:
        call_command("regenerate_token_async", "--progress-interval", "-1", stdout=io.StringIO())
    assert str(refused.value) == (
        "--progress-interval must be a number of seconds above 0, got -1.0"
    )


def test_an_unknown_progress_mode_is_refused_by_the_engine():
    with pytest.raises(RotatorError, match=r"^--progress must be one of auto, bar, plain, json"):
        Options(progress="fancy").validate()
