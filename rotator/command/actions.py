"""The operator's flags of the rotation commands: verify, leaked, status, pause, cancel, purge.

``add_arguments`` adds them to a command's parser; ``operate`` runs the one
that was given (and returns True), or checks what must be confirmed before a
rotation (``--restart`` on an unfinished run) and returns False so that the
command rotates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import CommandParser

from rotator.errors import RotatorError
from rotator.service import leaked, status, verification
from rotator.service.target import Target
from rotator.store import control
from rotator.store.lifecycle import active_run, last_finished_run

#: Exit status of a paused rotation (set by the engine) and of a cancelled one.
EXIT_PAUSED = 3
EXIT_CANCELLED = 4
#: Whether runs are fingerprinted unless --fingerprints/--no-fingerprints says otherwise.
FINGERPRINTS = False
ACTIONS = ("verify", "leaked", "status", "pause", "cancel", "purge")


def add_arguments(parser: CommandParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--verify",
        action="store_true",
        help="Compare the table with the fingerprints taken when the last run was planned; "
        "exit 1 if any row still holds a pre-rotation value. Changes nothing.",
    )
    group.add_argument(
        "--leaked",
        metavar="FILE",
        default=None,
        help="Count how many values of a leaked dump (one per line) are still in the table; "
        "exit 1 if any. Changes nothing.",
    )
    parser.add_argument(
        "--leaked-column",
        metavar="NAME",
        default=None,
        help="With --leaked: the file is a CSV with a header; take the values from column NAME.",
    )
    parser.add_argument(
        "--leaked-hashed",
        action="store_true",
        help="With --leaked: each line is the sha256 (hex) of a value's text, not the value.",
    )
    group.add_argument(
        "--status",
        action="store_true",
        help="Print every run of the field (state, rows, rate, time remaining, workers); "
        "per shard at -v 2. Changes nothing.",
    )
    parser.add_argument("--json", action="store_true", help="With --status: one JSON object.")
    group.add_argument(
        "--pause",
        action="store_true",
        help=f"Pause the unfinished run: every worker stops after its batch (exit status "
        f"{EXIT_PAUSED}); run the command again to resume.",
    )
    group.add_argument(
        "--cancel",
        action="store_true",
        help=f"Abandon the unfinished run: its workers stop within a batch (exit status "
        f"{EXIT_CANCELLED}); nothing already rotated is undone. Asks for confirmation.",
    )
    group.add_argument(
        "--purge",
        metavar="DAYS",
        type=float,
        default=None,
        help="Delete finished and abandoned runs planned more than DAYS days ago, with their "
        "shards and fingerprints (0: all of them).",
    )
    parser.add_argument(
        "--fingerprints",
        action=argparse.BooleanOptionalAction,
        default=FINGERPRINTS,
        help="When planning a run, fingerprint every row's value (a truncated hash, on the "
        f"server) for --verify (default: {'on' if FINGERPRINTS else 'off'}).",
    )
    parser.add_argument(
        "--yes",
        action="store_true",
        help="Confirm --restart of an unfinished run, or --cancel, without being asked.",
    )


def _action(options: dict[str, Any]) -> str | None:
    for name in ACTIONS:
        value = options.get(name)
        if value is not None and value is not False:
            return name
    return None


def _check(options: dict[str, Any], action: str | None) -> None:
    if options.get("json") and action != "status":
        raise RotatorError("--json goes with --status; add --status or drop --json")
    if (options.get("leaked_column") or options.get("leaked_hashed")) and action != "leaked":
        flag = "--leaked-column" if options.get("leaked_column") else "--leaked-hashed"
        raise RotatorError(f"{flag} goes with --leaked FILE; add --leaked FILE or drop {flag}")
    if action is not None and (options.get("restart") or options.get("dry_run")):
        flag = "--restart" if options.get("restart") else "--dry-run"
        raise RotatorError(f"--{action} cannot be combined with {flag}; run them one at a time")


def stdin_is_tty() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def ask(prompt: str) -> str:
    try:
        return input(prompt)
    except EOFError:
        return ""


def operate(target: Target, options: dict[str, Any], out: Any, command: str) -> bool:
    """Run the operator's flag given in ``options``; False when the command should rotate.

    ``command`` is how to run the rotation again (``python manage.py ...``).
    """
    action = _action(options)
    _check(options, action)
    verbosity = options.get("verbosity", 1)
    if action is None:
        if options.get("dry_run") and not options.get("restart"):
            return _dry_run_after_finish(target, out)
        if options.get("restart") and not options.get("dry_run"):
            question = control.restart_question(target)
            if question:
                control.confirm(question, options.get("yes"), stdin_is_tty(), ask, "--restart")
        return False
    if action == "verify":
        result = verification.verify(target, keys=verbosity >= 2)
        if verbosity >= 1 or not result.ok:
            for line in verification.report(result, target):
                out.write(line)
        if not result.ok:
            raise RotatorError(verification.failure(result, target, command))
    elif action == "leaked":
        path = Path(options["leaked"])
        found = leaked.count_leaked(
            target, path, options.get("leaked_column"), options.get("leaked_hashed", False)
        )
        if verbosity >= 1:
            out.write(leaked.report(found, target, path))
        if found.present:
            raise RotatorError(
                f"{found.present:,} leaked values are still in {target.label}; "
                f"rotate them: {command}"
            )
    elif action == "status":
        if options.get("json"):
            runs = status.statuses(target)
            out.write(json.dumps(status.as_json(target, runs), indent=2))
        else:
            status.print_status(target, out, verbosity)
    elif action == "pause":
        run = control.pause_target(target)
        out.write(
            f"Paused run {run.pk} of {target.label}: its workers stop after their current batch "
            f"(exit status {EXIT_PAUSED}). Resume with: {command}"
        )
    elif action == "cancel":
        run = active_run(target)
        if run is not None:
            question = (
                f"--cancel abandons run {run.pk} of {target.label} ({run.rows_done():,}/"
                f"{run.total_rows:,} rows rotated; they stay rotated)"
            )
            control.confirm(question, options.get("yes"), stdin_is_tty(), ask, "--cancel")
        run = control.cancel_target(target)
        out.write(
            f"Cancelled run {run.pk} of {target.label}: its workers stop within a batch "
            f"(exit status {EXIT_CANCELLED}); rows already rotated stay rotated."
        )
    elif action == "purge":
        runs, prints = control.purge(target, options["purge"])
        out.write(
            f"Purged {runs:,} finished or abandoned run{'s' if runs != 1 else ''} of "
            f"{target.label} and {prints:,} fingerprints."
        )
    else:
        raise AssertionError("unreachable")
    return True


def _dry_run_after_finish(target: Target, out: Any) -> bool:
    """--dry-run on a fully rotated field: show the finished run instead of failing."""
    if active_run(target) is not None:
        return False
    finished = last_finished_run(target)
    if finished is None:
        return False
    out.write("Dry run: nothing will be changed.")
    when = f"{finished.finished_at:%Y-%m-%d %H:%M:%S %Z}" if finished.finished_at else "?"
    out.write(
        f"{target.label} was fully rotated by run {finished.pk} (finished {when}); "
        "running the command would do nothing (pass --restart to rotate every row again)."
    )
    now = status.database_now(target.alias)
    for line in status.lines(status.run_status(finished, now, target.label)):
        out.write(line)
    return True
