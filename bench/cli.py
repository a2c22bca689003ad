"""Command line of the benchmark: parse, set up the bench database, run, print."""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from django.db import DatabaseError

from .bootstrap import BenchError, bench_name, setup
from .contenders import (
    BUDGET,
    CONTENDERS,
    MEMORY,
    PER_ROW_SAMPLE,
    PILOT,
    Contender,
    for_vendor,
    select,
)
from .database import NAME

if TYPE_CHECKING:
    from .database import Server
    from .report import Row

DEFAULT_ROWS = 1_000_000
MEMORY_FACTOR = 5


def _positive(text: str) -> int:
    value = int(text.replace(",", "").replace("_", ""))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value!r}")
    return value


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="Time rotator and its alternatives on a fresh table of N tickets each, in "
        "a PostgreSQL database the benchmark creates and drops (never your data).",
        epilog=f"Takes about 20 minutes at the default --rows {DEFAULT_ROWS:,} on 2 CPUs (the "
        "textbook and literal-async contenders take about 7 minutes each); --rows 100000 takes "
        "a few. Database: the server of DATABASE_URL (postgres://... only), or the embedded "
        f"PostgreSQL in .pgdata/ when DATABASE_URL is unset. On that server it creates a "
        f"database {NAME!r} (or the URL's own database, when its name ends in _bench) for each "
        "contender and drops it at the end (an existing "
        f"{NAME!r} is dropped first).",
    )
    parser.add_argument(
        "--rows",
        type=_positive,
        default=DEFAULT_ROWS,
        help=f"Rows in the table for each contender (default {DEFAULT_ROWS:,}; "
        "--rows 100000 for a quick run).",
    )
    parser.add_argument(
        "--repeat",
        type=_positive,
        default=1,
        help="Runs of each contender, alternating between contenders; the "
        "table shows the median (default 1).",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="Server to benchmark on: postgres://..., mysql://... (MariaDB or MySQL) or "
        "sqlite:///... (default: DATABASE_URL, else the embedded PostgreSQL). Each database's "
        "own floor is measured in the same run.",
    )
    parser.add_argument(
        "--only",
        default=None,
        help="Comma-separated contender names or patterns, e.g. "
        "'floor,rotator-*'. Names: " + ", ".join(c.name for c in CONTENDERS),
    )
    parser.add_argument(
        "--csv", type=Path, default=None, help="Also write the results as CSV to this path."
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="Instead: an application's latency during a rotation and the rotation's speed "
        "under that load (bench/live.py; see python bench/live.py --help).",
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help=f"Instead: rotator's peak RSS (--workers 4) at --rows and "
        f"{MEMORY_FACTOR} x --rows rows (default 1M and 5M), with their ratio.",
    )
    parser.add_argument(
        "--factor",
        type=_positive,
        default=MEMORY_FACTOR,
        help=f"With --memory: the larger table is this many times --rows (default "
        f"{MEMORY_FACTOR}; --factor 10 for 1M and 10M). Raise max_wal_size first (README).",
    )
    return parser.parse_args(argv)


class Echo:
    """Progress on stderr, stamped with the time since the start."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, text: str) -> None:
        minutes, seconds = divmod(int(time.monotonic() - self.started), 60)
        print(f"[{minutes:3d}:{seconds:02d}] {text}", file=sys.stderr, flush=True)


def _header(command: str, rows: str, repeat: int, mode: str, server: Server) -> list[str]:
    import django

    settings = ", ".join(f"{k}={v}" for k, v in server.settings.items())
    postgresql = server.version.startswith("PostgreSQL")
    return [
        f"## rotator benchmark: {mode}",
        "",
        f"- Command: `{command}`",
        f"- Machine: {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, Django {django.get_version()}",
        f"- {server.version}, {server.where}; {settings}",
        f"- Rows: {rows} per contender, each on a fresh table "
        + (
            "(COPY seed, VACUUM ANALYZE, CHECKPOINT) with autovacuum off"
            if postgresql
            else "(seeded, then ANALYZE)"
        )
        + ", in a database the benchmark creates and drops",
        f"- Repeats: {repeat}, contenders alternating; Wall is the median"
        + (" (min-max)" if repeat > 1 else "")
        + " of the work alone, timed in a fresh child process; ~ marks figures extrapolated "
        "from a sample",
        "- Peak RSS: ru_maxrss of that child; WAL: "
        + (
            "pg_wal_lsn_diff() of pg_current_wal_lsn() around the work (server-wide)"
            if postgresql
            else "not measured (PostgreSQL only)"
        ),
        "",
    ]


def _footer(rows: list[Row], checkpoint: bool) -> list[str]:
    by_name = {r.first.contender.name: r for r in rows}
    lines = []
    bar, quiet = by_name.get("rotator-w4-bar"), by_name.get("rotator-w4-quiet")
    if bar and quiet:
        extra = bar.seconds - quiet.seconds
        lines.append(
            f"- Progress bar cost at 4 workers: {bar.seconds:,.2f} s with a tqdm bar vs "
            f"{quiet.seconds:,.2f} s with -v 0 ({extra:+,.2f} s, "
            f"{100 * extra / quiet.seconds:+.1f}%)"
        )
    if "per-row" in by_name:
        lines.append(
            f"- per-row runs on the first {PER_ROW_SAMPLE:,} rows (by id). Its WAL, scaled up "
            "linearly, overstates: most of it is full-page images of random token-index leaves "
            "(each page's first change after the CHECKPOINT), which a full run pays once per "
            "page, not per row."
        )
    if "async-literal" in by_name:
        lines.append(
            f"- The literal design runs on the first {PILOT:,} rows first and again on all rows "
            f"only if that projects to at most {BUDGET / 60:.0f} min."
        )
    if not checkpoint:
        lines.append("- CHECKPOINT was not permitted for this user and was skipped.")
    return ["", *lines] if lines else []


def _benchmark(
    args: argparse.Namespace, command: str, contenders: list[Contender], echo: Echo
) -> tuple[str, list[str]]:
    from django.core.management import call_command

    from . import database, report, table
    from .suite import Suite

    name = bench_name()
    echo(f"creating database {name!r}")
    database.create()
    try:
        call_command("migrate", verbosity=0)
        table.prepare_schema()
        server = database.describe()
        suite = Suite(name, echo)
        plan = (
            [(MEMORY, args.rows), (MEMORY, args.rows * args.factor)]
            if args.memory
            else [(c, args.rows) for c in contenders]
        )
        measured = []
        for repeat in range(args.repeat):
            for i, (contender, rows) in enumerate(plan, 1):
                step = f"[{repeat + 1}/{args.repeat}] {i}/{len(plan)}"
                echo(f"{step} {contender.name}, {rows:,} rows")
                measured.append(suite.run(contender, rows))
    finally:
        echo(f"dropping database {name!r}")
        database.drop()

    if args.memory:
        mode, sizes = "peak memory", f"{args.rows:,} and {args.rows * args.factor:,}"
    else:
        mode, sizes = "contenders", f"{args.rows:,}"
    lines = _header(command, sizes, args.repeat, mode, server)
    rows = report.group(measured)
    if args.memory:
        small, large = rows[0], rows[-1]
        lines += [
            report.memory_table(rows),
            "",
            f"- Peak RSS at {large.first.rows:,} / at {small.first.rows:,} rows: "
            f"{large.rss_peak / small.rss_peak:.2f}x (growth during the work: "
            f"{report.mib(large.rss_peak - large.rss_before)} vs "
            f"{report.mib(small.rss_peak - small.rss_before)})",
            f"- Wall at {large.first.rows:,} / at {small.first.rows:,} rows: "
            f"{large.seconds / small.seconds:.2f}x (rows: "
            f"{large.first.rows / small.first.rows:.0f}x)",
        ]
        all_rows = rows
    else:
        all_rows = rows + report.group(suite.seeds)
        lines += [report.table(all_rows), *_footer(rows, suite.checkpoint)]
    if args.csv:
        report.write_csv(args.csv, all_rows)
        echo(f"wrote {args.csv}")
    failed = [r.first.contender.name for r in all_rows if not r.ok]
    return "\n".join(lines), failed


def main(argv: list[str]) -> int:
    if "--live" in argv[1:]:
        from .live import main as live

        return live([argv[0], *(a for a in argv[1:] if a != "--live")])
    args = parse(argv[1:])
    command = shlex.join(["python", *argv])
    echo = Echo()
    if args.database_url:
        # Before Django reads its settings; the contenders' child processes inherit it.
        os.environ["DATABASE_URL"] = args.database_url
    try:
        contenders = select(args.only)
        setup(bench_name(), admin=True)
        contenders = for_vendor(contenders)
        text, failed = _benchmark(args, command, contenders, echo)
        print(text)
        if failed:
            print(f"bench: error: verification failed for {', '.join(failed)}", file=sys.stderr)
            return 1
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    except DatabaseError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"bench: error: database: {first}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    return 0
