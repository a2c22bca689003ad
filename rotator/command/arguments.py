"""The rotation commands' flags: names and help here, defaults and choices from Options."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import CommandParser, DjangoHelpFormatter
from django.db import DEFAULT_DB_ALIAS

from rotator.errors import ExitStatus
from rotator.service.options import MAX_BATCH_SIZE, PROGRESS_MODES, Options
from rotator.workers.sizing import MAX_BATCH, MIN_BATCH, TARGET_SECONDS

#: The operator's flags: at most one of them, instead of a rotation.
ACTIONS = ("verify", "leaked", "status", "pause", "cancel", "purge")
#: Whether runs are fingerprinted unless --fingerprints/--no-fingerprints says otherwise.
FINGERPRINTS = Options.default("fingerprints")


def epilog() -> str:
    statuses = "\n".join(f"  {int(status):<4} {_wrap(status.meaning, 7)}" for status in ExitStatus)
    return f"""\
exit status:
{statuses}

database:
  --database picks an alias of settings.DATABASES. The demo project's settings
  read DATABASE_URL (postgres://user@host:port/name, mysql://user@host:port/name
  or sqlite:///path; unset: the embedded PostgreSQL in .pgdata/).
"""


def _wrap(text: str, indent: int, width: int = 79) -> str:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width - indent:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return f"\n{' ' * indent}".join(lines)


class HelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Django's option order, with the epilog's layout kept as written."""


def _default(name: str) -> Any:
    return Options.default(name)


def add_arguments(parser: CommandParser, *, field: bool) -> None:
    """Every flag of rotate_field (``field``: it takes app_label.Model.field)."""
    if field:
        parser.add_argument("field", help="The field to rotate, as app_label.Model.field.")
    _add_rotation(parser)
    _add_pacing(parser)
    _add_actions(parser)
    _add_queueing(parser)


def _add_rotation(parser: CommandParser) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        default=_default("workers"),
        help=f"Concurrent workers, each on its own connection (default {_default('workers')}). "
        "May change between resumes.",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=_default("batch_size"),
        help=f"Rows per batch transaction, 1 to {MAX_BATCH_SIZE:,} (default: adaptive, "
        f"{MIN_BATCH:,} to {MAX_BATCH:,} rows, aiming at --batch-seconds per batch).",
    )
    parser.add_argument(
        "--batch-seconds",
        type=float,
        default=_default("batch_seconds"),
        metavar="SECONDS",
        help=f"What the adaptive batch size aims at, in seconds per batch (default "
        f"{TARGET_SECONDS:g}): a batch holds its rows' locks that long at most, so the "
        "application waits at most about that long for a row; shorter batches cost more "
        "commits.",
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=_default("shards"),
        help="Shards to plan (default 4 x --workers). Fixed once a run is planned.",
    )
    parser.add_argument(
        "--generator",
        default=_default("generator"),
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
        help="Abandon the unfinished run (or rotate a finished field again) and plan a new run.",
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
        "--fingerprints",
        action=argparse.BooleanOptionalAction,
        default=FINGERPRINTS,
        help="Fingerprint every row's value in its batch (a keyed hash, on the server), so "
        "that the run finishes only once a check of the table finds no old value left, and "
        f"for --verify (default: {'on' if FINGERPRINTS else 'off'}).",
    )
    parser.add_argument(
        "--settle",
        metavar="SECONDS",
        type=float,
        default=None,
        help="Seconds after the last batch before the check that finishes the run: saves of "
        "instances loaded before their batch are caught up to this long (default: "
        "settings.ROTATOR_SETTLE_SECONDS, else 30).",
    )


def _add_pacing(parser: CommandParser) -> None:
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=_default("lock_timeout"),
        help="Seconds a batch may wait for a row lock held by the application before it "
        f"rolls back and retries smaller after a pause (default {_default('lock_timeout'):g}).",
    )
    parser.add_argument(
        "--reconnect-timeout",
        type=float,
        default=_default("reconnect_timeout"),
        help="Seconds to wait for the database to come back after a lost connection or "
        "a server restart before giving up with a resume hint "
        f"(default {_default('reconnect_timeout'):g}).",
    )
    parser.add_argument(
        "--progress-interval",
        type=float,
        default=_default("progress_interval"),
        help="Seconds between progress lines when the output is not a terminal "
        f"(default {_default('progress_interval'):g}).",
    )
    parser.add_argument(
        "--progress",
        choices=PROGRESS_MODES,
        default=_default("progress"),
        help="Progress on stderr: a bar, plain log lines (with time and run), one JSON "
        "object per line, or none (default auto: a bar on a terminal, plain lines otherwise).",
    )
    parser.add_argument(
        "--max-rate",
        type=float,
        default=_default("max_rate"),
        metavar="ROWS_PER_S",
        help="Rotate at most this many rows per second, all workers of this process "
        "together (default: no limit).",
    )
    parser.add_argument(
        "--pause-when",
        default=_default("pause_when"),
        metavar="DOTTED_PATH",
        help="A callable checked between batches (at most once a second) that returns None, "
        "or a reason string to make every worker wait while it does.",
    )
    parser.add_argument(
        "--max-replication-lag",
        type=float,
        default=_default("max_replication_lag"),
        metavar="SECONDS",
        help="PostgreSQL only: wait while a standby's replay lag "
        "(pg_stat_replication.replay_lag) is above this many seconds.",
    )


def _add_actions(parser: CommandParser) -> None:
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
        help="Pause the unfinished run: every worker stops after its batch (exit status "
        f"{int(ExitStatus.PAUSED)}); run the command again to resume.",
    )
    group.add_argument(
        "--cancel",
        action="store_true",
        help="Abandon the unfinished run: its workers stop within a batch (exit status "
        f"{int(ExitStatus.CANCELLED)}); nothing already rotated is undone. Asks for "
        "confirmation.",
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
        "--yes",
        action="store_true",
        help="Confirm --restart of an unfinished run, or --cancel, without being asked.",
    )


def _add_queueing(parser: CommandParser) -> None:
    parser.add_argument(
        "--enqueue",
        action="store_true",
        help="Plan or resume the run here, send --workers tasks to the task queue "
        "(settings.ROTATOR_TASK_BACKEND: celery or django_tasks) to work it, print the run id "
        "and exit 0 at once; follow it with --status.",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="With --enqueue: follow the run with the progress display until it ends; the "
        "exit status says how (Ctrl-C stops following, not the run).",
    )


def options_from(parsed: dict[str, Any], **extra: Any) -> Options:
    """Options from the parsed flags (``extra``: what the command knows besides argv)."""
    return Options(
        workers=parsed["workers"],
        batch_size=parsed["batch_size"],
        batch_seconds=parsed["batch_seconds"],
        shards=parsed["shards"],
        generator=parsed["generator"],
        restart=parsed["restart"],
        dry_run=parsed["dry_run"],
        verbosity=parsed["verbosity"],
        progress_interval=parsed["progress_interval"],
        fill_nulls=parsed["fill_nulls"],
        lock_timeout=parsed["lock_timeout"],
        reconnect_timeout=parsed["reconnect_timeout"],
        progress=parsed["progress"],
        max_rate=parsed["max_rate"],
        pause_when=parsed["pause_when"],
        max_replication_lag=parsed["max_replication_lag"],
        fingerprints=parsed["fingerprints"],
        settle=parsed["settle"],
        **extra,
    )
