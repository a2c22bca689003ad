#!/usr/bin/env python
"""Live impact: what a rotation costs an application that keeps using the table.

    python bench/live.py [--rows N] [--workers W] [--rate R] [--threads T]
    python bench/run.py --live ...   (the same)

An application workload runs at a fixed rate (single-row UPDATEs of another
column and SELECTs of random tickets, through psycopg, in T threads) alone,
then during a rotation (``manage.py regenerate_token_async --workers W`` in a
child process); the rotation also runs alone. It prints the application's
p50/p99/max latency and errors for both, and the rotation's rows/s under load
against quiet, on the benchmark's own database (``rotator_bench``, ROTATOR_BENCH_DB,
or DATABASE_URL's own when its name ends in ``_bench``), on PostgreSQL or
MariaDB/MySQL (the application through MySQLdb there). With ``--holds`` (default 1)
the application also keeps random rows locked during the rotation, longer than
the rotator's lock timeout.

Latency is measured from the moment a statement was due, not from when it was
sent: a thread held up by a lock does not hide the statements it could not
send meanwhile (no coordinated omission).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.appload import Application, Samples, conninfo, quantile  # noqa: E402
from bench.bootstrap import ROOT, BenchError, bench_name, setup  # noqa: E402

BATCH_TARGET = 0.1  # seconds: the adaptive batch sizer's default aim (rotator/sizing.py)
#: The application waits at most one batch (plus scheduling), even on rows of a
#: window the rotator cannot finish because the application holds one of them.
TARGET_WORST = BATCH_TARGET + 0.2
TARGET_P99 = 0.050
TARGET_RATIO = 1.5


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/live.py",
        description="An application's latency during a rotation, and the rotation's speed "
        "under that load, on a database the benchmark creates and drops.",
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows (default 1,000,000).")
    parser.add_argument("--workers", type=int, default=4, help="Rotator workers (default 4).")
    parser.add_argument(
        "--rate", type=float, default=200.0, help="Application statements per second (200)."
    )
    parser.add_argument("--threads", type=int, default=3, help="Application threads (3).")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="Passed to the rotator (default: its adaptive size, aiming at 0.1 s a batch).",
    )
    parser.add_argument(
        "--batch-seconds",
        type=float,
        default=None,
        help=f"Passed to the rotator: what its adaptive size aims at (default {BATCH_TARGET:g} s).",
    )
    parser.add_argument(
        "--holds",
        type=int,
        default=1,
        help="Application threads that each keep one random row locked at a time (default 1; "
        "0: none); the other statements avoid those rows.",
    )
    parser.add_argument(
        "--hold-seconds",
        type=float,
        default=3.0,
        help="How long each of those rows stays locked (default 3, over the rotator's 2 s "
        "lock timeout).",
    )
    parser.add_argument(
        "--app-seconds",
        type=float,
        default=None,
        help="How long the application runs alone (default: as long as the quiet rotation).",
    )
    return parser.parse_args(argv)


def pacing(args: argparse.Namespace) -> list[str]:
    """The rotator's flags that size its batches, as given."""
    flags = [("--batch-size", args.batch_size), ("--batch-seconds", args.batch_seconds)]
    return [word for flag, value in flags if value is not None for word in (flag, f"{value:g}")]


@dataclass(frozen=True)
class Rotation:
    seconds: float
    rows: int
    ok: bool
    verdict: str
    #: rows/s as the command reports it (the work alone, without start-up), if it said
    reported: float | None = None

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def database_url() -> str:
    from django.db import connections

    connection = connections["default"]
    if connection.vendor == "mysql":
        params = connection.get_connection_params()
        auth = quote(str(params.get("user") or "root"), safe="")
        if password := params.get("password") or params.get("passwd"):
            auth += ":" + quote(str(password), safe="")
        host = quote(str(params.get("host") or "127.0.0.1"), safe="")
        return f"mysql://{auth}@{host}:{params.get('port') or 3306}/{params['database']}"
    info = conninfo()
    host = quote(str(info.get("host") or "localhost"), safe="")
    auth = quote(str(info.get("user") or "postgres"), safe="")
    if info.get("password"):
        auth += ":" + quote(str(info["password"]), safe="")
    return f"postgres://{auth}@{host}:{info.get('port') or 5432}/{info['dbname']}"


def rotate(rows: int, workers: int, pacing: list[str], echo: Echo) -> Rotation:
    """``regenerate_token_async`` in a child process, timed from spawn to exit, verified."""
    from bench import table

    env = dict(os.environ, DATABASE_URL=database_url(), PYTHONUNBUFFERED="1")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    command = [sys.executable, "-W", "ignore", str(ROOT / "manage.py"), "regenerate_token_async"]
    command += ["--workers", str(workers), "--progress-interval", "5"]
    # The final check at once (ROTATOR_SETTLE_SECONDS overrides): the settle time is
    # idle, and counted in the rotation's phase it diluted the application's p99.
    command += ["--settle", os.environ.get("ROTATOR_SETTLE_SECONDS", "0")]
    command += pacing
    started = time.perf_counter()
    proc = subprocess.run(
        command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise BenchError(f"the rotation exited with status {proc.returncode}")
    reported = None
    for line in proc.stdout.splitlines():
        if re.match(r"(Rotated|Planned|Resuming)", line):
            echo(f"  {line}")
        if found := re.search(r"\(([\d,]+) rows/s\)", line):
            reported = float(found.group(1).replace(",", ""))
    verdict = table.verify(expected=rows, total=rows, upper=None)
    return Rotation(seconds, rows, verdict.ok, verdict.text, reported)


class Echo:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, text: str) -> None:
        minutes, seconds = divmod(int(time.monotonic() - self.started), 60)
        print(f"[{minutes:3d}:{seconds:02d}] {text}", file=sys.stderr, flush=True)


def fresh_table(rows: int, echo: Echo) -> None:
    from bench import table
    from tickets.seeding import seed

    table.reset()
    echo(f"seeding {rows:,} rows ...")
    seed(rows, "default", lambda n: None)
    table.snapshot()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def app_cells(s: Samples) -> str:
    lat = s.all()
    errors = sum(s.errors.values())
    detail = f" ({', '.join(f'{k} {v}' for k, v in s.errors.items())})" if errors else ""
    return (
        f"{len(lat):,} ({len(lat) / s.seconds:,.0f}/s) | {errors}{detail} | "
        f"{ms(quantile(lat, 0.5))} | {ms(quantile(lat, 0.99))} | {ms(max(lat))}"
    )


def service(s: Samples) -> str:
    parts = []
    for kind in ("update", "select"):
        times = s.service[kind]
        worst = max(times, default=float("nan"))
        parts.append(f"{kind.upper()} p99 {ms(quantile(times, 0.99))}, max {ms(worst)}")
    return "; ".join(parts)


def report(
    args: argparse.Namespace,
    command: str,
    alone: Samples,
    quiet: Rotation,
    loaded: Rotation,
    during: Samples,
) -> str:
    from bench.database import describe
    from rotator.service.options import Options

    server = describe()
    lock_timeout = Options().lock_timeout
    ratio = loaded.seconds / quiet.seconds
    if quiet.reported and loaded.reported:
        own = (
            f"; by the command's own rows/s (no start-up): {quiet.reported / loaded.reported:.2f}x "
            f"({loaded.reported:,.0f} vs {quiet.reported:,.0f})"
        )
    else:
        own = ""
    lat = during.all()
    p99, worst, errors = quantile(lat, 0.99), max(lat), sum(during.errors.values())
    # One batch (the target it is sized for) and scheduling.
    bound = TARGET_WORST - BATCH_TARGET + (args.batch_seconds or BATCH_TARGET)

    def mark(ok: bool) -> str:
        return "met" if ok else "MISSED"

    return "\n".join(
        [
            "## rotator benchmark: live impact",
            "",
            f"- Command: `{command}`",
            f"- {server.version}, {server.where}; {os.cpu_count()} CPUs",
            f"- {args.rows:,} rows; rotator `--workers {args.workers}"
            + "".join(f" {word}" for word in pacing(args))
            + "` (lock timeout "
            f"{lock_timeout:g} s); application: {args.rate:g} statements/s in {args.threads} "
            "threads, half `UPDATE ... SET subject` and half `SELECT` of one random ticket each"
            + (
                f"; during the rotation {args.holds} more thread(s) each kept one random row "
                f"locked for {args.hold_seconds:g} s at a time ({args.held} rows in all; the "
                "other statements avoid them)"
                if args.holds
                else ""
            ),
            "",
            "| phase | wall | rotation rows/s | app statements | app errors | app p50 | app p99 "
            "| app max |",
            "|---|---|---|---|---|---|---|---|",
            f"| application alone | {alone.seconds:,.1f} s | | {app_cells(alone)} |",
            f"| rotation alone | {quiet.seconds:,.2f} s | {quiet.rate:,.0f} | | | | | |",
            f"| rotation + application | {loaded.seconds:,.2f} s | {loaded.rate:,.0f} | "
            f"{app_cells(during)} |",
            "",
            f"- App errors during the rotation: {errors} (target 0: {mark(errors == 0)})",
            f"- App p99 during the rotation: {ms(p99)} (target <= {ms(TARGET_P99)}: "
            f"{mark(p99 <= TARGET_P99)}); UPDATEs alone: "
            f"{ms(quantile(during.latency['update'], 0.99))}, SELECTs alone: "
            f"{ms(quantile(during.latency['select'], 0.99))}",
            "- Service time (from send, without the wait behind a slow statement of the same "
            f"thread) during the rotation: {service(during)}",
            f"- App max during the rotation: {ms(worst)} (target <= one batch target + 0.2 s "
            f"= {ms(bound)}: {mark(worst <= bound)})",
            f"- Rotation under load / quiet: {ratio:.2f}x (target <= {TARGET_RATIO}x: "
            f"{mark(ratio <= TARGET_RATIO)}); rows/s {loaded.rate:,.0f} vs {quiet.rate:,.0f}{own}",
            f"- Verified: quiet {quiet.verdict}; under load {loaded.verdict}",
            "- Rotation wall: spawn to exit of `manage.py regenerate_token_async` (includes "
            "Django start-up and planning); latency from when each statement was due",
        ]
    )


def run(args: argparse.Namespace, command: str, echo: Echo) -> tuple[str, bool]:
    from django.core.management import call_command

    from bench import database, table

    name = bench_name()
    echo(f"creating database {name!r}")
    database.create()
    try:
        call_command("migrate", verbosity=0)
        table.prepare_schema()
        fresh_table(args.rows, echo)
        echo("rotation alone ...")
        quiet = rotate(args.rows, args.workers, pacing(args), echo)
        echo(f"  {quiet.seconds:,.2f} s, {quiet.verdict}")
        seconds = args.app_seconds or max(10.0, quiet.seconds)
        echo(f"application alone for {seconds:,.0f} s ...")
        with Application(args.rate, args.threads, args.rows) as app:
            time.sleep(seconds)
        alone = app.samples
        fresh_table(args.rows, echo)
        echo("rotation + application ...")
        holding = Application(args.rate, args.threads, args.rows, args.holds, args.hold_seconds)
        with holding as app:
            loaded = rotate(args.rows, args.workers, pacing(args), echo)
        during = app.samples
        args.held = app.held
        echo(f"  {loaded.seconds:,.2f} s, {loaded.verdict}")
        text = report(args, command, alone, quiet, loaded, during)
    finally:
        echo(f"dropping database {name!r}")
        database.drop()
    return text, quiet.ok and loaded.ok


def main(argv: list[str]) -> int:
    args = parse(argv[1:])
    command = shlex.join(["python", *sys.argv])  # as typed, --live included
    try:
        setup(bench_name(), admin=True)
        text, ok = run(args, command, Echo())
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    print(text)
    if not ok:
        print("bench: error: verification failed: a rotation skipped rows", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
