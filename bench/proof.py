#!/usr/bin/env python
"""What proving a rotation costs: fingerprints, --verify, --leaked, and a pause.

    python bench/proof.py [--rows N] [--leaked-lines M]

On a database of its own (``rotator_bench``, as bench/run.py), with N rows
(default 1,000,000), each step in a fresh child process:

1. rotate with 4 workers, fingerprints off, on a fresh table;
2. on a fresh table: ``--leaked`` with a file of all N pre-rotation tokens
   (must find N), rotate with fingerprints on (timing the fingerprints alone),
   ``--verify`` (must say 0), ``--leaked`` again (must find 0), one row put
   back to its old token with SQL, ``--verify`` again (must say 1);
3. ``--leaked`` with M random values (default 10,000,000): peak RSS against
   the N-line run;
4. on a fresh table: ``manage.py regenerate_token_async --workers 4``, paused
   from here at a quarter of the rows: time until it exits, rows rotated after
   the pause, then the rerun that finishes it (every row rotated exactly once).

Prints a markdown table on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bootstrap import ROOT, BenchError, setup  # noqa: E402
from bench.child import peak_rss  # noqa: E402

NAME = os.environ.get("ROTATOR_BENCH_DB", "rotator_bench")
TARGET = "tickets.Ticket.token"


# --- child side -----------------------------------------------------------------------


def _rotate(fingerprints: bool) -> dict[str, Any]:
    from rotator.service.rotation import Options, rotate
    from rotator.target import resolve_target

    started = time.perf_counter()
    # settle=0: the check that finishes a fingerprinted run is timed, the settle wait is not.
    report = rotate(
        resolve_target(TARGET, "default"),
        Options(workers=4, verbosity=0, fingerprints=fingerprints, settle=0.0),
    )
    seconds = time.perf_counter() - started
    if not report.finished:
        raise AssertionError(f"unreachable: run {report.run_id} did not finish")
    check = 0.0
    if fingerprints:
        from rotator.models import Run
        from rotator.service.fingerprints import stale_keys

        # The check that finished the run, once more, timed alone.
        started = time.perf_counter()
        stale_keys(resolve_target(TARGET, "default"), Run.objects.get(pk=report.run_id))
        check = time.perf_counter() - started
    return {"seconds": seconds, "rows": report.rows, "fingerprints": 0.0, "check": check}


def _verify() -> dict[str, Any]:
    from rotator.service import verification
    from rotator.target import resolve_target

    target = resolve_target(TARGET, "default")
    started = time.perf_counter()
    result = verification.verify(target)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rows": result.rows,
        "stale": result.stale,
        "line": verification.report(result, target)[-5],
    }


def _leaked(path: str) -> dict[str, Any]:
    from rotator.service.leaked import count_leaked
    from rotator.target import resolve_target

    started = time.perf_counter()
    found = count_leaked(resolve_target(TARGET, "default"), Path(path))
    return {
        "seconds": time.perf_counter() - started,
        "rows": found.lines,
        "present": found.present,
    }


def child(step: str, arg: str) -> None:
    setup(NAME)
    before = peak_rss()
    if step == "rotate":
        result = _rotate(fingerprints=arg == "on")
    elif step == "verify":
        result = _verify()
    elif step == "leaked":
        result = _leaked(arg)
    else:
        raise AssertionError("unreachable")
    result.update(rss_before=before, rss_peak=peak_rss())
    print(json.dumps(result))


# --- parent side ----------------------------------------------------------------------


def echo(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run_child(step: str, arg: str = "") -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-m", "bench.proof", "--child", step, arg],
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise BenchError(f"step {step!r} failed in its child process")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fresh_table(rows: int) -> None:
    from bench import table
    from tickets.seeding import seed

    table.reset()
    _sql("TRUNCATE rotator_fingerprint, rotator_fingerprintset")
    echo(f"seeding {rows:,} rows")
    seed(rows, "default", lambda n: None)
    table.snapshot()


def _sql(sql: str, params: list | None = None) -> Any:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() if cursor.description else None


def dump_side_tokens(path: Path) -> None:
    """The pre-rotation tokens (bench/table.py's side table), one per line."""
    from django.db import connection

    from bench.table import SIDE

    sql = f"COPY (SELECT token FROM {SIDE}) TO STDOUT"
    with connection.cursor() as cursor, path.open("wb") as out, cursor.cursor.copy(sql) as copy:
        for block in copy:
            out.write(block)


def random_file(path: Path, lines: int) -> None:
    with path.open("w") as out:
        for done in range(0, lines, 100_000):
            n = min(100_000, lines - done)
            out.write("".join(f"{uuid.uuid4()}\n" for _ in range(n)))


def database_url() -> str:
    from django.db import connection

    params = connection.get_connection_params()
    from urllib.parse import quote

    host = quote(str(params.get("host") or "localhost"), safe="")
    return (
        f"postgres://{params.get('user') or 'postgres'}@{host}:{params.get('port') or 5432}/{NAME}"
    )


def pause_step(rows: int) -> dict[str, Any]:
    """Pause a 4-worker manage.py run at a quarter of the rows; then finish it."""
    from rotator.models import Run
    from rotator.store import lifecycle

    env = dict(os.environ, DATABASE_URL=database_url(), PYTHONUNBUFFERED="1")
    command = [sys.executable, "-W", "ignore", "manage.py", "regenerate_token_async"]
    args = ["--workers", "4", "-v", "0"]
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            command + args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stderr=err
        )
        deadline = time.monotonic() + 600
        while True:
            run = Run.objects.filter(state=Run.State.ACTIVE).first()
            done = run.rows_done() if run else 0
            if done >= rows // 4 or proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        if run is None or proc.poll() is not None:
            raise BenchError("the rotation ended before it could be paused")
        lifecycle.pause(run, "bench")
        at_pause = run.rows_done()
        paused_at = time.perf_counter()
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(60)
            echo("the engine did not stop on the pause (stopped it with SIGINT)")
        stop_seconds = time.perf_counter() - paused_at
        after = run.rows_done()
        err.seek(0)
        said = [line for line in err.read().splitlines() if "aused" in line]
    started = time.perf_counter()
    rerun = subprocess.run(command + args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)
    rerun_seconds = time.perf_counter() - started
    return {
        "exit": code,
        "stop_seconds": stop_seconds,
        "at_pause": at_pause,
        "after_pause": after - at_pause,
        "said": said[-1] if said else "",
        "rerun_exit": rerun.returncode,
        "rerun_seconds": rerun_seconds,
    }


def cost_table(rows: int) -> None:
    from bench import table
    from rotator.models import Fingerprint, Run
    from tickets.seeding import seed

    table.reset()
    Fingerprint.objects.all().delete()
    Run.objects.all().delete()
    echo(f"seeding {rows:,} rows")
    seed(rows, "default", lambda n: None)
    table.snapshot()


def cost(n: int, repeat: int) -> int:
    """Fingerprints off and on, alternating (off, on, then on, off), on fresh tables, and
    --verify after each fingerprinted run."""
    try:
        setup(NAME, admin=True)
        from django.core.management import call_command
        from django.db import connection

        from bench import database, table

        database.create(NAME)
        got: dict[str, list[float]] = {"off": [], "on": [], "check": [], "verify": []}
        line = ""
        try:
            call_command("migrate", verbosity=0)
            table.prepare_schema()
            for round_ in range(repeat):
                # ABBA: a drift over the rounds (a server warming up, its files growing)
                # weighs on both sides alike.
                for mode in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
                    cost_table(n)
                    echo(f"round {round_ + 1}: rotate, fingerprints {mode}")
                    result = run_child("rotate", mode)
                    got[mode].append(result["seconds"])
                    if mode == "on":
                        got["check"].append(result["check"])
                        echo("--verify")
                        verified = run_child("verify")
                        got["verify"].append(verified["seconds"])
                        line = verified["line"]
            vendor = connection.vendor
        finally:
            echo(f"dropping database {NAME!r}")
            database.drop(NAME)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    off, on = sorted(got["off"]), sorted(got["on"])
    med_off, med_on = off[len(off) // 2], on[len(on) // 2]
    print(f"`{shlex.join(['python', 'bench/proof.py', *sys.argv[1:]])}` on {vendor}, {n:,} rows")
    print("")
    print("| step | seconds (each round) | median |")
    print("|---|---|---|")
    for label, key in (
        ("rotate `--workers 4 --no-fingerprints`", "off"),
        ("rotate `--workers 4` (fingerprints and the final check)", "on"),
        ("of which the final check (timed again alone)", "check"),
        ("`--verify` after the run", "verify"),
    ):
        each = ", ".join(f"{x:.2f}" for x in got[key])
        values = sorted(got[key])
        print(f"| {label} | {each} | {values[len(values) // 2]:.2f} s |")
    print("")
    ratios = sorted(b / a for a, b in zip(got["off"], got["on"], strict=True))
    each = ", ".join(f"{r:.3f}" for r in ratios)
    print(f"- fingerprints on / off, round by round: {each}; median {ratios[len(ratios) // 2]:.3f}")
    print(f"- medians: {med_on / med_off:.3f} (+{med_on / med_off - 1:.1%})")
    print(f"- --verify said: {line}")
    return 0


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def main(argv: list[str]) -> int:
    if len(argv) > 1 and argv[1] == "--child":
        child(argv[2], argv[3] if len(argv) > 3 else "")
        return 0
    parser = argparse.ArgumentParser(prog="bench/proof.py", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows (default 1,000,000)")
    parser.add_argument(
        "--leaked-lines", type=int, default=10_000_000, help="lines of the big --leaked file"
    )
    parser.add_argument(
        "--cost",
        action="store_true",
        help="instead: fingerprints off and on side by side (any database), and --verify",
    )
    parser.add_argument("--repeat", type=int, default=1, help="with --cost: rounds")
    args = parser.parse_args(argv[1:])
    n = args.rows
    if args.cost:
        return cost(n, args.repeat)
    try:
        setup(NAME, admin=True)
        from django.core.management import call_command

        from bench import database, table
        from bench.table import verify as verify_table

        database.create()
        results: dict[str, Any] = {}
        try:
            call_command("migrate", verbosity=0)
            table.prepare_schema()
            with tempfile.TemporaryDirectory(prefix="rotator-proof-") as tmp:
                fresh_table(n)
                echo("rotate, fingerprints off")
                results["nofp"] = run_child("rotate", "off")
                fresh_table(n)
                leaked_file = Path(tmp) / "leaked.txt"
                dump_side_tokens(leaked_file)
                echo("--leaked before the run")
                results["leaked_before"] = run_child("leaked", str(leaked_file))
                echo("rotate, fingerprints on")
                results["fp"] = run_child("rotate", "on")
                ok = verify_table(expected=n, total=n, upper=None)
                echo("--verify")
                results["verify"] = run_child("verify")
                echo("--leaked after the run")
                results["leaked_after"] = run_child("leaked", str(leaked_file))
                _sql(
                    f"UPDATE tickets_ticket t SET token = s.token FROM {table.SIDE} s "
                    "WHERE t.id = s.id AND t.id = (SELECT min(id) FROM tickets_ticket)"
                )
                results["verify_one"] = run_child("verify")
                big = Path(tmp) / "big.txt"
                echo(f"writing {args.leaked_lines:,} random values")
                random_file(big, args.leaked_lines)
                echo(f"--leaked with {args.leaked_lines:,} lines")
                results["leaked_big"] = run_child("leaked", str(big))
                big.unlink()
            fresh_table(n)
            echo("pause a 4-worker run at 25%, then rerun")
            results["pause"] = pause_step(n)
            exactly_once = verify_table(expected=n, total=n, upper=None)
        finally:
            echo(f"dropping database {NAME!r}")
            database.drop()
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    print(report(args, results, ok.ok, exactly_once.ok))
    return 0


def report(args: argparse.Namespace, r: dict[str, Any], rotated: bool, exactly: bool) -> str:
    n = args.rows
    nofp, fp = r["nofp"], r["fp"]
    p = r["pause"]
    fp_share = fp["fingerprints"] / nofp["seconds"]
    rows = [
        ("rotate `--workers 4`, fingerprints off", nofp["seconds"], nofp, ""),
        (
            "rotate `--workers 4`, fingerprints on",
            fp["seconds"],
            fp,
            f"fingerprints {fp['fingerprints']:.2f} s = {fp_share:.1%} of the run without",
        ),
        ("`--verify` after the run", r["verify"]["seconds"], r["verify"], r["verify"]["line"]),
        (
            "`--verify` after one row was put back",
            r["verify_one"]["seconds"],
            r["verify_one"],
            r["verify_one"]["line"],
        ),
        (
            f"`--leaked` {n:,} pre-rotation tokens, before the run",
            r["leaked_before"]["seconds"],
            r["leaked_before"],
            f"{r['leaked_before']['present']:,} still in the table",
        ),
        (
            f"`--leaked` {n:,} pre-rotation tokens, after the run",
            r["leaked_after"]["seconds"],
            r["leaked_after"],
            f"{r['leaked_after']['present']:,} still in the table",
        ),
        (
            f"`--leaked` {args.leaked_lines:,} random values",
            r["leaked_big"]["seconds"],
            r["leaked_big"],
            f"peak RSS {r['leaked_big']['rss_peak'] / r['leaked_after']['rss_peak']:.2f}x "
            f"the {n:,}-line run",
        ),
    ]
    lines = [
        f"`{shlex.join(['python', 'bench/proof.py', *sys.argv[1:]])}`, {n:,} rows",
        "",
        "| step | wall | peak RSS | result |",
        "|---|---|---|---|",
    ]
    for label, seconds, got, note in rows:
        lines.append(f"| {label} | {seconds:,.2f} s | {mib(got['rss_peak'])} | {note} |")
    lines.append(
        f"| pause at {p['at_pause']:,} rows (4 workers) | {p['stop_seconds']:,.2f} s to exit "
        f"{p['exit']} | | {p['after_pause']:,} rows rotated after the pause; "
        f"{p['said'] or 'no paused line'} |"
    )
    lines.append(
        f"| rerun after the pause | {p['rerun_seconds']:,.2f} s (process) | | exit "
        f"{p['rerun_exit']}; every row rotated exactly once: {'yes' if exactly else 'NO'} |"
    )
    lines += [
        "",
        f"- Fingerprints cost {fp['fingerprints']:.2f} s against a {nofp['seconds']:.2f} s run "
        f"without them ({fp_share:.1%}); the runs took {fp['seconds']:.2f} s and "
        f"{nofp['seconds']:.2f} s ({fp['seconds'] / nofp['seconds']:.2f}x).",
        f"- Every row got a new token in the fingerprinted run: {'yes' if rotated else 'NO'}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
