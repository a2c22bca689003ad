from __future__ import annotations

import shlex
import sys
from importlib import metadata
from typing import Any

import django
from django.core.management.base import BaseCommand, CommandParser

from rotator.command import actions, arguments
from rotator.command.console import rotate_and_report
from rotator.command.failures import one_line_errors
from rotator.command.interrupts import SignalStopper
from rotator.errors import RotatorError
from rotator.target import Target, resolve_target

#: Options that must not be repeated when the command is run again to resume.
_NOT_FOR_RESUME = {"--restart", "--dry-run"}


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
        kwargs.setdefault("formatter_class", arguments.HelpFormatter)
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.epilog = arguments.epilog()
        return parser

    def get_version(self) -> str:
        try:
            version = metadata.version("rotator")
        except metadata.PackageNotFoundError:
            version = "unknown (the rotator package is not installed)"
        return f"rotator {version} (Django {django.get_version()})"

    def add_arguments(self, parser: CommandParser) -> None:
        arguments.add_arguments(parser, field=self.target is None)

    def handle(self, *args: Any, **options: Any) -> None:
        label = self.target or options["field"]
        alias = options["database"]
        with one_line_errors(alias, "rotated"):
            reading = options.get("leaked") is not None or bool(options.get("status"))
            target = resolve_target(label, alias, key=reading)
            self.dispatch(target, options)

    def dispatch(self, target: Target, options: dict[str, Any]) -> None:
        """An operator's flag, or a rotation."""
        action = actions.chosen(options)
        actions.check_combination(options, action)
        if action is not None and (options["enqueue"] or options["wait"]):
            flag = "--enqueue" if options["enqueue"] else "--wait"
            raise RotatorError(f"--{action} cannot be combined with {flag}; run them one at a time")
        if action is not None:
            actions.perform(
                action, target, options, self.stdout, self.command_line(target), self.stderr
            )
            return
        if (
            options["dry_run"]
            and not options["restart"]
            and actions.show_finished(target, self.stdout)
        ):
            return
        if options["restart"] and not options["dry_run"]:
            actions.confirm_restart(target, options["yes"])
        if options["enqueue"] or options["wait"]:
            self.enqueue(target, options)
            return
        resume = resume_command(self.name, self.command_line(target))
        rotate_and_report(
            target,
            arguments.options_from(options, tty=self.stderr.isatty(), resume_hint=f"`{resume}`"),
            self.stdout,
            self.stderr,
            SignalStopper(),
        )

    def enqueue(self, target: Target, options: dict[str, Any]) -> None:
        """--enqueue [--wait]: the run on the task queue."""
        if not options["enqueue"]:
            raise RotatorError("--wait goes with --enqueue; add --enqueue or drop --wait")
        # Imported here: it loads the task queue's client (Celery), which nothing else needs.
        from rotator.command.enqueued import enqueue_and_report

        enqueue_and_report(
            target,
            arguments.options_from(options, tty=self.stderr.isatty(), resume_hint="--enqueue"),
            options["wait"],
            self.command_line(target),
            self.stdout,
            self.stderr,
        )

    @property
    def name(self) -> str:
        return self.__class__.__module__.rsplit(".", 1)[-1]

    def command_line(self, target: Target) -> str:
        return f"python manage.py {self.name}" + ("" if self.target else f" {target.label}")
