from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError
from tqdm import tqdm

from rotator.command.progress import TqdmFile
from rotator.errors import first_line
from tickets.models import Ticket
from tickets.seeding import seed


class Command(BaseCommand):
    help = "Insert N tickets with random tokens (COPY on PostgreSQL)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--count", type=int, default=1_000_000, help="Rows to add (default 1,000,000)."
        )
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help='Database alias (default "default").'
        )
        parser.add_argument(
            "--if-empty", action="store_true", help="Do nothing when the table already has rows."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        count, alias = options["count"], options["database"]
        if count < 1:
            raise CommandError(f"--count must be at least 1, got {count!r}")
        try:
            if options["if_empty"] and Ticket.objects.using(alias).exists():
                if options["verbosity"] >= 1:
                    self.stdout.write("tickets_ticket already has rows; nothing seeded.")
                return
            show = options["verbosity"] >= 1 and self.stderr.isatty()
            with tqdm(
                total=count,
                unit=" rows",
                desc="seeding",
                disable=not show,
                file=TqdmFile(self.stderr),
            ) as bar:

                def advance(rows: int) -> None:
                    bar.update(rows)

                seed(count, alias, advance)
        except DatabaseError as exc:
            first = first_line(exc)
            raise CommandError(f"database {alias!r}: {first}") from exc
        if options["verbosity"] >= 1:
            self.stdout.write(f"Seeded {count:,} tickets.")
