from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.utils.connection import ConnectionDoesNotExist

from rotator.errors import RotatorError
from rotator.runner import Options, rotate
from rotator.target import Target, resolve_target


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Command(BaseCommand):
    help = (
        "Give every row of app_label.Model.field a fresh value from the field's default "
        "(or --generator), in sharded, resumable batches."
    )
    #: The target is fixed by subclasses such as regenerate_token_async.
    target: str | None = None

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
            help="Rows per batch transaction "
            "(default: adaptive, aiming at half a second per batch).",
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
            "or 'database' for gen_random_uuid() on PostgreSQL (default: the field's default).",
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
            target = resolve_target(label, alias)
            self.rotate(target, options)
        except RotatorError as exc:
            raise CommandError(str(exc), returncode=exc.returncode) from exc
        except DatabaseError as exc:
            raise CommandError(f"database {alias!r}: {_first_line(exc)}") from exc
        except KeyboardInterrupt:
            # Only reachable before the workers start (they handle SIGINT themselves);
            # planning is one transaction, so nothing was changed.
            raise CommandError("Interrupted before any row was rotated", returncode=130) from None

    def rotate(self, target: Target, options: dict[str, Any]) -> None:
        name = self.__class__.__module__.rsplit(".", 1)[-1]
        resume = f"python manage.py {name}" + ("" if self.target else f" {target.label}")
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
                lock_timeout=options["lock_timeout"],
                reconnect_timeout=options["reconnect_timeout"],
                resume_hint=f"`{resume}`",
            ),
            out=self.stdout,
            err=self.stderr,
        )
