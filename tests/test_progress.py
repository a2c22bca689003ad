"""What the commands print: a tqdm bar on a terminal, plain lines elsewhere, never a token."""

from __future__ import annotations

import json
import logging
import re
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from rotator.models import Run
from tests.conftest import fill, run, vendor
from tests.support import add_tickets, interrupted_run, tokens
from tickets.models import Ticket

pytestmark = pytest.mark.django_db(transaction=True)

LABEL = re.escape("tickets.Ticket.token")
#: One bar frame: "tickets.Ticket.token:  40%|####    | 400/1,000 [0:01, 812 rows/s, 0:01 left]"
#: (the label, the statistics and the status go when the terminal is narrow).
FRAME = re.compile(
    rf"^(?:{LABEL}: +)?(?P<pct>\d+)%\|[#0-9 ▏▎▍▌▋▊▉█]*\| (?P<done>[\d,]+)/(?P<total>[\d,]+)"
    r"(?: \[(?P<elapsed>\d+:\d\d), (?P<rate>[\d,]+) rows/s, "
    r"(?P<eta>\d+:\d\d left|estimating|no estimate)\])?(?: (?P<status>\S.*))?$"
)
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
#: One plain progress line, for logs and pipes.
LINE = re.compile(
    rf"^(?P<stamp>{STAMP}) run (?P<run>\d+): "
    r"(?P<done>[\d,]+)/(?P<total>[\d,]+) rows \((?P<pct>\d+\.\d)%\), [\d,]+ rows/s, "
    r"(?:\d+:\d\d(?::\d\d)? remaining|estimating time remaining|no estimate: .*)"
    r"(?:; (?P<status>.+))?$"
)
SUMMARY = re.compile(
    rf"^Rotated (?P<rows>[\d,]+) rows of {LABEL} in (?P<time>\d+:\d\d(?::\d\d)?) "
    r"\((?P<rate>[\d,]+) rows/s\) with (?P<workers>\d+) workers?; run (?P<run>\d+) finished\.$"
)
ERASE = "\x1b[K"
#: The check that ends a run draws its own line after the bar (tests/test_verify_progress.py).
CHECK = re.compile(rf"^Checking {LABEL}: ")


def frames(err: str) -> list[re.Match]:
    """The bar frames in ``err``, in order; anything else there fails the test."""
    found = []
    for chunk in re.split(r"[\r\n]", err.replace(ERASE, "")):
        if chunk and not CHECK.match(chunk):
            assert chunk == chunk.rstrip(), f"trailing spaces: {chunk!r}"
            match = FRAME.match(chunk)
            assert match, f"not a progress bar frame: {chunk!r}"
            found.append(match)
    return found


def number(text: str) -> int:
    return int(text.replace(",", ""))


def test_a_terminal_gets_a_bar_that_ends_at_exactly_100_percent():
    fill(3_000)
    out, err = run("regenerate_token_async", "--workers", "2", "--batch-size", "100", tty=True)
    bar = frames(err)
    assert len(bar) >= 2
    assert [(m["done"], m["total"]) for m in bar][0] == ("0", "3,000")
    last = bar[-1]
    assert (last["pct"], last["done"], last["total"]) == ("100", "3,000", "3,000")
    assert last["eta"] == "0:00 left"
    assert number(last["rate"]) > 0
    assert all(number(m["done"]) <= 3_000 and int(m["pct"]) <= 100 for m in bar)
    done = [number(m["done"]) for m in bar]
    assert done == sorted(done)
    # tqdm writes through Django's OutputWrapper without its newline per write:
    # frames are "\r" + text + erase-to-end-of-line, and the closed bar ends the line once;
    # then the final check draws its line and erases it.
    bars, check = err.split("\n")
    assert bars.startswith("\r") and bars.endswith(f"]{ERASE}") and not frames(check)
    assert check.startswith("\rChecking ") and check.endswith(f"\r{ERASE}")
    assert SUMMARY.match(out.splitlines()[-1])


def test_a_resumed_run_starts_its_bar_at_the_rows_already_done():
    fill(1_000)
    stopped = interrupted_run(workers=2, batch_size=25, committed=2)
    out, err = run("regenerate_token_async", "--workers", "2", tty=True)
    bar = frames(err)
    assert (bar[0]["pct"], bar[0]["done"], bar[0]["total"]) == ("5", "50", "1,000")
    assert (bar[-1]["pct"], bar[-1]["done"]) == ("100", "1,000")
    assert all(number(m["done"]) >= 50 for m in bar)
    summary = SUMMARY.match(out.splitlines()[-1])
    assert summary["rows"] == "950" and summary["run"] == str(stopped.pk)


def test_rows_deleted_during_a_run_are_not_hidden_behind_a_full_bar():
    fill(1_000)
    interrupted_run(workers=1, batch_size=25, committed=2)
    ids = sorted(Ticket.objects.values_list("pk", flat=True))
    Ticket.objects.filter(pk__in=ids[500:520]).delete()
    out, err = run("regenerate_token_async", "--workers", "1", tty=True)
    assert Run.objects.get().state == Run.State.FINISHED
    assert frames(err)[-1]["pct"] == "98"
    assert out.splitlines()[-1] == (
        f"Run {Run.objects.get().pk}: 1,000 rows planned; 980 rotated, "
        "20 vanished (deleted during the run)."
    )


def test_the_summary_counts_rows_inserted_inside_the_planned_range():
    add_tickets(*range(1, 1_001, 2))  # odd keys: 500 rows up to 999
    interrupted_run(workers=1, batch_size=25, committed=2)
    add_tickets(*range(600, 700, 2))  # 50 more, below the high-water mark
    out, err = run("regenerate_token_async", "--workers", "1", tty=True)
    assert Run.objects.get().rows_done() == 550
    assert all(number(m["done"]) <= 500 for m in frames(err))  # never over 100%: holds
    assert SUMMARY.match(out.splitlines()[-1])["rows"] == "500"  # 450 printed


def test_without_a_terminal_plain_lines_report_progress():
    fill(2_000)
    out, err = run(
        "regenerate_token_async",
        "--workers=1",
        "--batch-size=250",
        "--progress-interval=0.001",
    )
    lines = err.splitlines()
    assert lines, "no progress lines"
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    done = [number(m["done"]) for m in matches]
    assert done == sorted(done) and all(0 <= n <= 2_000 for n in done)
    assert {m["total"] for m in matches} == {"2,000"}
    assert all(float(m["pct"]) <= 100.0 for m in matches)
    assert lines[-1].split(": ", 1)[1].startswith("2,000/2,000 rows (100.0%), ")
    assert len({n for n in done if n}) >= 2  # lines follow the batches (250 rows each)
    assert all(n % 250 == 0 for n in done)
    assert {m["run"] for m in matches} == {str(Run.objects.get().pk)}


def test_without_a_terminal_lines_wait_for_the_interval():
    fill(500)
    out, err = run("regenerate_token_async", "--workers", "1", "--progress-interval", "3600")
    assert err == ""
    assert SUMMARY.match(out.splitlines()[-1])


@pytest.mark.parametrize("tty", [True, False], ids=["terminal", "pipe"])
def test_verbosity_0_prints_nothing_on_success(tty):
    fill(500)
    before = tokens()
    out, err = run(
        "regenerate_token_async",
        "--workers=2",
        "--progress-interval=0.001",
        "--verbosity=0",
        tty=tty,
    )
    assert (out, err) == ("", "")
    assert all(tokens()[pk] != before[pk] for pk in before)


def test_verbosity_0_prints_nothing_when_resuming():
    fill(500)
    interrupted_run(workers=2, batch_size=25, committed=2)
    out, err = run("regenerate_token_async", "--workers", "2", "-v", "0")
    assert (out, err) == ("", "")


def test_verbosity_0_prints_nothing_when_restarting():
    fill(500)
    interrupted_run(workers=2, batch_size=25, committed=2)
    out, err = run("regenerate_token_async", "--restart", "--yes", "-v", "0")
    assert (out, err) == ("", "")


def test_verbosity_2_reports_every_shard():
    fill(1_000)
    out, err = run("regenerate_token_async", "--workers", "2", "--shards", "4", "-v", "2")
    connection_name = r"(?:postgresql:pid=\d+|sqlite:[0-9a-f]+|mysql:id=\d+)"
    prefix = rf"{STAMP} run \d+: "
    for shard in range(4):
        assert re.search(
            rf"^{prefix}worker \d: shard {shard} \(0/250 rows done\), batch [\d,]+ rows, "
            rf"on {connection_name}$",
            err,
            re.M,
        ), err
        assert re.search(
            rf"^{prefix}worker \d: shard {shard} done, 250 rows \([\d,]+ rows/s this session\)$",
            err,
            re.M,
        ), err


def test_verbosity_1_has_no_shard_detail():
    fill(1_000)
    out, err = run("regenerate_token_async", "--workers", "2", "--shards", "4")
    assert "shard" not in err


def test_the_summary_gives_rows_time_rate_and_run():
    fill(1_200)
    out, err = run("regenerate_token_async", "--workers", "3", "--batch-size", "100")
    summary = SUMMARY.match(out.splitlines()[-1])
    assert summary, out
    assert summary["rows"] == "1,200"
    assert number(summary["rate"]) > 0
    assert summary["run"] == str(Run.objects.get().pk)
    assert summary["workers"] in {"3", "1"}  # 1 on SQLite, which has one writer


def spellings(values: list[uuid.UUID]) -> set[str]:
    """Every way a token could be printed: dashed, hex, either case, and its repr."""
    found = set()
    for value in values:
        for text in (str(value), value.hex, repr(value)):
            found |= {text, text.upper()}
    return found


def test_no_token_is_ever_printed_even_at_verbosity_3():
    fill(300)
    seen = list(tokens().values())
    printed = []

    printed += run("regenerate_token_async", "--dry-run", "-v", "3")
    printed += run(
        "regenerate_token_async",
        "--workers=2",
        "--batch-size=40",
        "--progress-interval=0.001",
        "--verbosity=3",
    )
    seen += tokens().values()
    printed += run("regenerate_token_async", "--restart", "-v", "3", tty=True)
    seen += tokens().values()
    printed += run(
        "rotate_field",
        "tickets.Ticket.token",
        "--restart",
        "--generator=uuid.uuid4",
        "--progress-interval=0.001",
        "--verbosity=3",
    )
    seen += tokens().values()

    output = "\n".join(printed)
    assert "rows" in output  # the output was captured at all
    assert not [text for text in spellings(seen) if text in output]


def test_no_token_is_printed_when_a_batch_fails():
    fill(50)
    _taken.clear()
    seen = list(tokens().values())
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as failed:
        call_command(
            "regenerate_token_async",
            "--generator=tests.test_progress.last_token",
            "--workers=1",
            "--batch-size=10",
            "--verbosity=3",
            stdout=out,
            stderr=err,
        )
    output = "\n".join((str(failed.value), out.getvalue(), err.getvalue()))
    assert "found no free value" in output
    assert not [text for text in spellings(seen) if text in output]


_taken: list[uuid.UUID] = []


def last_token() -> uuid.UUID:
    """A generator of existing tokens only, in turn (for the test above): distinct values,
    so the up-front value-space check passes, but every one is taken."""
    if not _taken:
        _taken.extend(Ticket.objects.order_by("-pk").values_list("token", flat=True))
    _taken.append(_taken.pop(0))
    return _taken[-1]


def test_no_token_reaches_the_query_log_even_with_debug(settings, caplog):
    fill(200)
    seen = list(tokens().values())
    settings.DEBUG = True  # Django now logs every query it runs, with its parameters
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    run("regenerate_token_async", "--workers=2", "--batch-size=50")
    caplog.set_level(logging.WARNING, logger="django.db.backends")
    seen += tokens().values()
    assert "UPDATE" in caplog.text  # the checkpoints were logged: the log works
    assert not [text for text in spellings(seen) if text in caplog.text]


JSON_FIELDS = {
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


def test_json_progress_is_one_object_per_line_with_every_field():
    fill(2_000)
    out, err = run(
        "regenerate_token_async",
        "--workers=2",
        "--batch-size=100",
        "--progress=json",
        "--progress-interval=0.001",
        "-v",
        "2",
        tty=True,  # asked for explicitly: JSON even on a terminal
    )
    records = [json.loads(line) for line in err.splitlines()]
    assert len(records) > 5
    assert all(set(record) == JSON_FIELDS for record in records)
    progress = [r for r in records if r["event"] == "progress"]
    assert [r["rows_done"] for r in progress] == sorted(r["rows_done"] for r in progress)
    assert {(r["run"], r["rows_total"], r["workers"]) for r in records} == {
        (Run.objects.get().pk, 2_000, 2 if vendor() != "sqlite" else 1)
    }
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r["time"]) for r in records)
    assert any(r["event"] == "message" and " done, " in r["message"] for r in records)
    end = records[-1]
    assert (end["event"], end["rows_done"], end["percent"], end["status"]) == (
        "end",
        2_000,
        100.0,
        None,
    )
    assert SUMMARY.match(out.splitlines()[-1])  # stdout keeps the plan and summary lines


@pytest.mark.parametrize(
    ("mode", "tty", "expected"),
    [("plain", True, "lines"), ("bar", False, "bar"), ("none", True, "nothing")],
)
def test_progress_mode_overrides_what_the_terminal_suggests(mode, tty, expected):
    fill(1_000)
    out, err = run(
        "regenerate_token_async",
        "--batch-size=100",
        f"--progress={mode}",
        "--progress-interval=0.001",
        tty=tty,
    )
    if expected == "lines":
        assert err and all(LINE.match(line) for line in err.splitlines())
    elif expected == "bar":
        assert frames(err)[-1]["pct"] == "100"
    else:
        assert err == ""
    assert SUMMARY.match(out.splitlines()[-1])
