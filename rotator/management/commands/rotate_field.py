from __future__ import annotations

import argparse
import shlex
import sys
from importlib import metadata
from typing import Any

import django
from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    DjangoHelpFormatter,
)
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.utils.connection import ConnectionDoesNotExist

from rotator.command import actions
from rotator.errors import RotatorError
from rotator.service.connectivity import check_reachable, explain_lost, explain_rotator_error
from rotator.service.preflight import MAX_BATCH_SIZE
from rotator.service.rotation import Options, rotate
from rotator.service.target import Target, resolve_target
from rotator.workers.sizing import MAX_BATCH, MIN_BATCH

EPILOG = """\
exit status:
  0    this invocation's work is done (or --dry-run printed the plan)
  1    a problem, said in one line: bad field or option, database unreachable,
       field already rotated (pass --restart), ...
  2    usage error (unknown option, missing or malformed argument)
  3    an operator paused the run: run the same command again to resume
  4    the run was cancelled, or abandoned by --restart elsewhere
  130  stopped by SIGINT (Ctrl-C): run the same command again to resume
  143  stopped by SIGTERM: run the same command again to resume

database:
  --database picks an alias of settings.DATABASES. The demo project's settings
  read DATABASE_URL (postgres://user@host:port/name or sqlite:///path; unset:
  the embedded PostgreSQL in .pgdata/).
"""

#: Options that must not be repeated when the command is run again to resume.
_NOT_FOR_RESUME = {"--restart", "--dry-run"}


class _HelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Django's option order, with the epilog's layout kept as written."""


def resume_command(name: str, fallback: str) -> str:
    """The command line to run again: as it was typed when run from a shell."""
    if sys.argv[1:2] != [name]:
        return fallback  # called from code (call_command), not from a command line
    argv = list(getattr(sys, "orig_argv", sys.argv))
    return shlex.join(arg for arg in argv if arg not in _NOT_FOR_RESUME)


class Command(BaseCommand):
    help = (
        "Give every row of app_label.Model.field a fresh value from the field's default "
        "(or --generator), in sharded, resumable batches."
    )
    #: The target is fixed by subclasses such as regenerate_token_async.
    target: str | None = None

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.epilog = EPILOG
        return parser

    def get_version(self) -> str:
        try:
            version = metadata.version("rotator")
        except metadata.PackageNotFoundError:
            version = "unknown (the rotator package is not installed)"
        return f"rotator {version} (Django {django.get_version()})"

    def add_arguments(self, parser: CommandParser) -> None:
        if self.target is None:
            parser.add_argument("field", help="The field to rotate, as app_label.Model.field.")
        parser.add_argument(
            "--workers",
            type=int,
            default=4,
            help="Concurrent workers, each on its own "
            "connection (default 4). May change between resumes.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=None,
            help=f"Rows per batch transaction, 1 to {MAX_BATCH_SIZE:,} (default: adaptive, "
            f"{MIN_BATCH:,} to {MAX_BATCH:,} rows, aiming at half a second per batch).",
        )
        parser.add_argument(
            "--shards",
            type=int,
            default=None,
            help="Shards to plan (default 4 x --workers). Fixed once a run is planned.",
        )
        parser.add_argument(
            "--generator",
            default=None,
            help="Dotted path of a callable making one new value, "
            "or 'database' for gen_random_uuid() on PostgreSQL, UUID columns only "
            "(default: the field's default).",
        )
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help='Database alias (default "default").'
        )
        parser.add_argument(
            "--restart",
            action="store_true",
            help="Abandon the unfinished run (or rotate a "
            "finished field again) and plan a new run.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Print the plan and the SQL of one batch; change nothing.",
        )
        parser.add_argument(
            "--fill-nulls",
            action="store_true",
            help="Give rows whose value is NULL a new value too (default: NULL stays NULL).",
        )
        parser.add_argument(
            "--lock-timeout",
            type=float,
            default=2.0,
            help="Seconds a batch may wait for a row lock held by the application before it "
            "rolls back and retries smaller after a pause (default 2).",
        )
        parser.add_argument(
            "--reconnect-timeout",
            type=float,
            default=60.0,
            help="Seconds to wait for the database to come back after a lost connection or "
            "a server restart before giving up with a resume hint (default 60).",
        )
        parser.add_argument(
            "--progress-interval",
            type=float,
            default=5.0,
            help="Seconds between progress lines when the output is not a terminal (default 5).",
        )
        parser.add_argument(
            "--progress",
            choices=["auto", "bar", "plain", "json", "none"],
            default="auto",
            help="Progress on stderr: a bar, plain log lines (with time and run), one JSON "
            "object per line, or none (default auto: a bar on a terminal, plain lines otherwise).",
        )
        parser.add_argument(
            "--max-rate",
            type=float,
            default=None,
            metavar="ROWS_PER_S",
            help="Rotate at most this many rows per second, all workers of this process "
            "together (default: no limit).",
        )
        parser.add_argument(
            "--pause-when",
            default=None,
            metavar="DOTTED_PATH",
            help="A callable checked between batches (at most once a second) that returns None, "
            "or a reason string to make every worker wait while it does.",
        )
        parser.add_argument(
            "--max-replication-lag",
            type=float,
            default=None,
            metavar="SECONDS",
            help="PostgreSQL only: wait while a standby's replay lag "
            "(pg_stat_replication.replay_lag) is above this many seconds.",
        )
        actions.add_arguments(parser)  # --verify, --leaked, --status, --pause, ...

    def handle(self, *args: Any, **options: Any) -> None:
        label = self.target or options["field"]
        alias = options["database"]
        try:
            connections[alias]
        except ConnectionDoesNotExist:
            known = ", ".join(sorted(connections.settings))
            raise CommandError(
                f"unknown database {alias!r}; settings.DATABASES has: {known}"
            ) from None
        try:
            check_reachable(alias)
            target = resolve_target(label, alias)
            if actions.operate(target, options, self.stdout, self.command_line(target)):
                return
            self.rotate(target, options)
        except RotatorError as exc:
            message = explain_rotator_error(alias, exc)
            raise CommandError(message, returncode=exc.returncode) from exc
        except DatabaseError as exc:
            raise CommandError(explain_lost(alias, exc)) from exc
        except KeyboardInterrupt:
            # Only reachable before the workers start (they handle SIGINT themselves);
            # planning is one transaction, so nothing was changed.
            raise CommandError("Interrupted before any row was rotated", returncode=130) from None

    def command_line(self, target: Target) -> str:
        name = self.__class__.__module__.rsplit(".", 1)[-1]
        return f"python manage.py {name}" + ("" if self.target else f" {target.label}")

    def rotate(self, target: Target, options: dict[str, Any]) -> None:
        name = self.__class__.__module__.rsplit(".", 1)[-1]
        resume = resume_command(
            name, f"python manage.py {name}" + ("" if self.target else f" {target.label}")
        )
        rotate(
            target,
            Options(
                workers=options["workers"],
                batch_size=options["batch_size"],
                shards=options["shards"],
                generator=options["generator"],
                restart=options["restart"],
                dry_run=options["dry_run"],
                verbosity=options["verbosity"],
                tty=self.stderr.isatty(),
                progress_interval=options["progress_interval"],
                fill_nulls=options["fill_nulls"],
                lock_timeout=options["lock_timeout"],
                reconnect_timeout=options["reconnect_timeout"],
                progress=options["progress"],
                max_rate=options["max_rate"],
                pause_when=options["pause_when"],
                max_replication_lag=options["max_replication_lag"],
                resume_hint=f"`{resume}`",
                fingerprints=options["fingerprints"],
            ),
            out=self.stdout,
            err=self.stderr,
        )
