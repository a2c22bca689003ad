"""revoke_rows app_label.Model: delete rows (all, or those a leaked dump names) in sharded,
resumable batches. Parse, check, delegate to rotator.service.revocation; print."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS

from rotator.command import actions, arguments
from rotator.command.console import Console
from rotator.command.failures import one_line_errors
from rotator.command.interrupts import SignalStopper
from rotator.errors import ExitStatus, RotatorError
from rotator.management.commands.rotate_field import resume_command
from rotator.service import status
from rotator.service.options import Options
from rotator.service.revocation import Dump, forget_ended, revoke
from rotator.service.rotation import Report
from rotator.store import lifecycle
from rotator.target import RevokeTarget, resolve_revocation, revoke_command
from rotator.text import format_duration

ACTIONS = ("status", "pause", "cancel")


class Command(BaseCommand):
    help = (
        "Delete the rows of app_label.Model (every row, or those whose --field value is in a "
        "--leaked dump) in sharded, resumable batches: for tables whose key is the secret."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        kwargs.setdefault("formatter_class", arguments.HelpFormatter)
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.epilog = arguments.epilog()
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", help="The model whose rows to revoke, as app_label.Model.")
        parser.add_argument(
            "--leaked",
            metavar="FILE",
            help="Revoke only the rows whose --field value is in this dump (one value a line; "
            "see --leaked-column, --leaked-hashed). Without it, every row goes.",
        )
        parser.add_argument(
            "--field",
            default=None,
            help="The field whose values --leaked holds (default: the primary key).",
        )
        parser.add_argument(
            "--leaked-column",
            metavar="NAME",
            help="With --leaked: the file is a CSV with a header; take the values from NAME.",
        )
        parser.add_argument(
            "--leaked-hashed",
            action="store_true",
            help="With --leaked: each line is the sha256 (hex) of a value's text.",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=Options.default("workers"),
            help=f"Concurrent workers (default {Options.default('workers')}).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=None,
            help="Rows per batch transaction (default: adaptive, aiming at 0.1 s).",
        )
        parser.add_argument(
            "--shards", type=int, default=None, help="Shards to plan (default 4 x --workers)."
        )
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help='Database alias (default "default").'
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Print how many rows would go and the SQL of one batch; change nothing.",
        )
        parser.add_argument(
            "--yes",
            action="store_true",
            help="Confirm revoking every row (no --leaked), or --cancel, without being asked.",
        )
        arguments._add_pacing(parser)
        _add_actions(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["database"]
        with one_line_errors(alias, "revoked"):
            target = resolve_revocation(options["model"], alias, options["field"])
            self.dispatch(target, options)

    def dispatch(self, target: RevokeTarget, options: dict[str, Any]) -> None:
        action = next((name for name in ACTIONS if options[name]), None)
        _check_combination(options, action)
        if action == "status":
            self._status(target, options["verbosity"])
            return
        if action == "pause":
            run = lifecycle.pause_target(target)
            self.stdout.write(
                f"Paused run {run.pk} of {target.label}: its workers stop after their current "
                f"batch (exit status {int(ExitStatus.PAUSED)}). Resume with: "
                f"{self.command_line(target)}"
            )
            return
        if action == "cancel":
            self._cancel(target, options["yes"])
            return
        dump = None
        if options["leaked"]:
            dump = Dump(Path(options["leaked"]), options["leaked_column"], options["leaked_hashed"])
        if dump is None and not options["dry_run"] and lifecycle.active_run(target) is None:
            actions.confirm(
                f"revoke_rows without --leaked deletes every row of {target.label} (those "
                "created after the plan stay)",
                options["yes"],
                "revoking every row",
            )
        resume = resume_command(self.name, self.command_line(target))
        opts = _options(options, tty=self.stderr.isatty(), resume_hint=f"`{resume}`")
        report = revoke(
            target,
            opts,
            dump,
            Console(self.stdout, self.stderr, opts, target.label),
            SignalStopper(),
        )
        for line in report.dry_run:
            self.stdout.write(line)
        if opts.verbosity >= 1 and not report.dry_run and report.run_id is not None:
            for line in summary(report, target):
                self.stdout.write(line)

    def _status(self, target: RevokeTarget, verbosity: int) -> None:
        runs = status.statuses(target)
        if not runs:
            self.stdout.write(f"{target.label} has no revocation runs on {target.alias!r}.")
        for one in runs:
            for line in status.lines(one, verbosity):
                # status.lines() words a rotation; a revocation's rows are revoked.
                self.stdout.write(line.replace(" rotated (", " revoked (", 1))

    def _cancel(self, target: RevokeTarget, yes: bool) -> None:
        run = lifecycle.active_run(target)
        if run is not None:
            actions.confirm(
                f"--cancel abandons run {run.pk} of {target.label} ({run.rows_done():,}/"
                f"{run.total_rows:,} planned rows revoked; they stay deleted)",
                yes,
                "--cancel",
            )
        run = lifecycle.cancel_target(target)
        forget_ended(target)
        self.stdout.write(
            f"Cancelled run {run.pk} of {target.label}: its workers stop within a batch "
            f"(exit status {int(ExitStatus.CANCELLED)}); deleted rows stay deleted."
        )

    @property
    def name(self) -> str:
        return self.__class__.__module__.rsplit(".", 1)[-1]

    def command_line(self, target: RevokeTarget) -> str:
        return revoke_command(target.model, target.alias)


def _add_actions(parser: CommandParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--status", action="store_true", help="Print every revocation run of the model."
    )
    group.add_argument(
        "--pause",
        action="store_true",
        help="Pause the unfinished revocation: workers stop after their batch (exit "
        f"status {int(ExitStatus.PAUSED)}); run the command again to resume.",
    )
    group.add_argument(
        "--cancel",
        action="store_true",
        help="Abandon the unfinished revocation (deleted rows stay deleted). Asks first.",
    )


def _check_combination(options: dict[str, Any], action: str | None) -> None:
    if (options["leaked_column"] or options["leaked_hashed"]) and not options["leaked"]:
        flag = "--leaked-column" if options["leaked_column"] else "--leaked-hashed"
        raise RotatorError(f"{flag} goes with --leaked FILE; add --leaked FILE or drop {flag}")
    if action is not None and (options["leaked"] or options["dry_run"]):
        flag = "--leaked" if options["leaked"] else "--dry-run"
        raise RotatorError(f"--{action} cannot be combined with {flag}; run them one at a time")


def _options(parsed: dict[str, Any], **extra: Any) -> Options:
    return Options(
        workers=parsed["workers"],
        batch_size=parsed["batch_size"],
        shards=parsed["shards"],
        dry_run=parsed["dry_run"],
        verbosity=parsed["verbosity"],
        progress_interval=parsed["progress_interval"],
        lock_timeout=parsed["lock_timeout"],
        reconnect_timeout=parsed["reconnect_timeout"],
        progress=parsed["progress"],
        max_rate=parsed["max_rate"],
        pause_when=parsed["pause_when"],
        max_replication_lag=parsed["max_replication_lag"],
        **extra,
    )


def summary(report: Report, target: RevokeTarget) -> list[str]:
    """The lines after a revocation: what this call did, and where every planned row went."""
    rate = report.rows / report.seconds if report.seconds > 0 else 0.0
    workers = f"{report.workers} worker{'s' if report.workers != 1 else ''}"
    lines = [
        f"Revoked {report.rows:,} rows of {target.label} in {format_duration(report.seconds)} "
        f"({rate:,.0f} rows/s) with {workers}; run {report.run_id} "
        + ("finished." if report.finished else "is not finished.")
    ]
    if report.finished and report.vanished:
        lines.append(
            f"Run {report.run_id}: {report.total_rows:,} rows planned; {report.rotated:,} "
            f"revoked, {report.vanished:,} already deleted by someone else."
        )
    elif not report.finished:
        where = f" by {', '.join(report.held_elsewhere)}" if report.held_elsewhere else ""
        lines.append(f"Its remaining shards are being revoked{where}.")
    return lines
