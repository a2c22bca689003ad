"""The operator's flags of the rotation commands: verify, leaked, status, pause, cancel, purge.

Each prints its result and raises RotatorError (exit 1, one line) when the
table is not as it should be. Prompts (``--cancel``, ``--restart``) are here
too: the library never asks.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db import DEFAULT_DB_ALIAS

from rotator.command.arguments import ACTIONS
from rotator.command.checks import CheckProgress
from rotator.command.interrupts import stopped_by_signals
from rotator.errors import ExitStatus, RotatorError
from rotator.service import leaked, status, verification
from rotator.service.checking import CheckStopper
from rotator.service.rotation import finished_sentence
from rotator.store import lifecycle
from rotator.target import Target, revoke_command


def chosen(options: dict[str, Any]) -> str | None:
    """The operator's flag given, if any (argparse lets through at most one)."""
    for name in ACTIONS:
        value = options.get(name)
        if value is not None and value is not False:
            return name
    return None


def check_combination(options: dict[str, Any], action: str | None) -> None:
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


def confirm(question: str, yes: bool, flag: str) -> None:
    """Go on only if the operator said yes: --yes, or 'yes' typed on a terminal."""
    if yes:
        return
    if not stdin_is_tty():
        raise RotatorError(f"{question}; pass --yes to confirm {flag} when not on a terminal")
    if ask(f"{question}. Type 'yes' to go on: ").strip().lower() != "yes":
        raise RotatorError(f"{flag} not confirmed; nothing was changed")


def confirm_restart(target: Target, yes: bool) -> None:
    """--restart throws an unfinished run away: ask first."""
    run = lifecycle.active_run(target)
    if run is None:
        return
    confirm(
        f"--restart abandons run {run.pk} of {target.label} ({run.state}, "
        f"{run.rows_done():,}/{run.total_rows:,} rows rotated) and rotates every row again",
        yes,
        "--restart",
    )


def perform(
    action: str, target: Target, options: dict[str, Any], out: Any, command: str, err: Any = None
) -> None:
    """Run the operator's flag ``action``; ``command`` is how to rotate (``python manage.py
    ...``), for the lines that say what to do next; ``err`` shows --verify's progress."""
    if action == "verify":
        _verify(target, options, out, command, err)
        return
    PERFORM[action](target, options, out, command)


def _verify(
    target: Target, options: dict[str, Any], out: Any, command: str, err: Any = None
) -> None:
    verbosity = options.get("verbosity", 1)
    tty = bool(err is not None and getattr(err, "isatty", lambda: False)())
    progress = CheckProgress(err, target.label, verbosity if err is not None else 0, tty)
    stopper = CheckStopper()
    what = f"--verify of {target.label} stopped; nothing was changed"
    try:
        with stopped_by_signals(stopper, what):
            result = verification.verify(
                target, keys=verbosity >= 2, events=progress, stopper=stopper
            )
    finally:
        progress.close()
    if verbosity >= 1 or not result.ok:
        for line in verification.report(result, target):
            out.write(line)
    if not result.ok:
        raise RotatorError(verification.failure(result, target, command))


def _leaked(target: Target, options: dict[str, Any], out: Any, command: str) -> None:
    path = Path(options["leaked"])
    found = leaked.count_leaked(
        target, path, options.get("leaked_column"), options.get("leaked_hashed", False)
    )
    if options.get("verbosity", 1) >= 1:
        out.write(leaked.report(found, target, path))
    if found.present:
        raise RotatorError(
            f"{found.present:,} leaked values are still in {target.label}; "
            + _leaked_next_step(target, options, command)
        )


def _leaked_next_step(target: Target, options: dict[str, Any], command: str) -> str:
    """What to run about leaked values still present: a command that works as typed."""
    database = "" if target.alias == DEFAULT_DB_ALIAS else f" --database {target.alias}"
    if target.field.primary_key:
        dump = [f"--leaked {shlex.quote(options['leaked'])}"]
        if options.get("leaked_column"):
            dump.append(f"--leaked-column {shlex.quote(options['leaked_column'])}")
        if options.get("leaked_hashed"):
            dump.append("--leaked-hashed")
        return (
            "the key is the secret, so revoke those rows: "
            f"{revoke_command(target.model, target.alias)} {' '.join(dump)}"
        )
    if lifecycle.active_run(target) is not None:
        return f"finish the unfinished run: {command}{database}"
    finished = lifecycle.last_finished_run(target)
    if finished is None:
        return f"rotate them: {command}{database}"
    # A plain rerun would refuse ("already rotated"), and --restart alone would forget
    # the generator the finished run used.
    generator = finished.options.get("generator")
    again = f" --generator {shlex.quote(generator)}" if generator else ""
    return (
        f"{finished_sentence(finished, target)}; rotate every row again: "
        f"{command}{database} --restart{again}"
    )


def _status(target: Target, options: dict[str, Any], out: Any, command: str) -> None:
    if options.get("json"):
        runs = status.statuses(target)
        out.write(json.dumps(status.as_json(target, runs), indent=2))
        return
    runs = status.statuses(target)
    if not runs:
        out.write(f"{target.label} has no runs on database {target.alias!r}.")
    for one in runs:
        for line in status.lines(one, options.get("verbosity", 1)):
            out.write(line)


def _pause(target: Target, options: dict[str, Any], out: Any, command: str) -> None:
    run = lifecycle.pause_target(target)
    out.write(
        f"Paused run {run.pk} of {target.label}: its workers stop after their current batch "
        f"(exit status {int(ExitStatus.PAUSED)}). Resume with: {command}"
    )


def _cancel(target: Target, options: dict[str, Any], out: Any, command: str) -> None:
    run = lifecycle.active_run(target)
    if run is not None:
        confirm(
            f"--cancel abandons run {run.pk} of {target.label} ({run.rows_done():,}/"
            f"{run.total_rows:,} rows rotated; they stay rotated)",
            options.get("yes", False),
            "--cancel",
        )
    run = lifecycle.cancel_target(target)
    out.write(
        f"Cancelled run {run.pk} of {target.label}: its workers stop within a batch "
        f"(exit status {int(ExitStatus.CANCELLED)}); rows already rotated stay rotated."
    )


def _purge(target: Target, options: dict[str, Any], out: Any, command: str) -> None:
    runs, prints = lifecycle.purge(target, options["purge"])
    out.write(
        f"Purged {runs:,} finished or abandoned run{'s' if runs != 1 else ''} of "
        f"{target.label} and {prints:,} fingerprints."
    )


PERFORM: dict[str, Callable[[Target, dict[str, Any], Any, str], None]] = {
    "verify": _verify,
    "leaked": _leaked,
    "status": _status,
    "pause": _pause,
    "cancel": _cancel,
    "purge": _purge,
}


def show_finished(target: Target, out: Any) -> bool:
    """--dry-run on a fully rotated field: show the finished run instead of failing."""
    if lifecycle.active_run(target) is not None:
        return False
    finished = lifecycle.last_finished_run(target)
    if finished is None:
        return False
    out.write("Dry run: nothing will be changed.")
    out.write(
        f"{finished_sentence(finished, target)}; running the command would do nothing "
        "(pass --restart to rotate every row again)."
    )
    now = lifecycle.database_now(target.alias)
    for line in status.lines(status.run_status(finished, now, target.label)):
        out.write(line)
    return True
