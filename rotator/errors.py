"""Exit statuses and the exceptions that carry them, for every layer.

The command turns an exception's ``status`` into the process's exit status;
the same enum writes the command's help epilog and is what the README's
"Exit status" table lists (a test compares them).
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    """How an invocation ended, as its exit status."""

    OK = 0
    ERROR = 1
    USAGE = 2
    PAUSED = 3
    CANCELLED = 4
    UNVERIFIED = 5
    SIGINT = 130
    SIGTERM = 143

    @property
    def meaning(self) -> str:
        return MEANINGS[self]


MEANINGS = {
    ExitStatus.OK: "the run is finished and a check of the table found no planned row holding "
    "its pre-rotation value (or, with --no-fingerprints, every shard is done; or --dry-run "
    "printed the plan)",
    ExitStatus.ERROR: "a problem, said in one line: bad field or option, database unreachable, "
    "field already rotated (pass --restart), --verify or --leaked found old values, ...",
    ExitStatus.USAGE: "usage error (unknown option, missing or malformed argument): argparse's "
    "usage line and message",
    ExitStatus.PAUSED: "an operator paused the run: run the same command again to resume",
    ExitStatus.CANCELLED: "the run was cancelled, or abandoned by --restart elsewhere, while "
    "this process worked it",
    ExitStatus.UNVERIFIED: "every row was rotated, but the check that finishes a run still "
    "found rows holding a pre-rotation value (the application saved them back): run the same "
    "command again to sweep them",
    ExitStatus.SIGINT: "stopped by SIGINT (Ctrl-C): run the same command again to resume "
    "(a stopped --verify changed nothing)",
    ExitStatus.SIGTERM: "stopped by SIGTERM: run the same command again to resume (a stopped "
    "--verify changed nothing)",
}


def first_line(exc: BaseException) -> str:
    """An exception's first line, or its class name when it has no message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class RotatorError(Exception):
    """A problem the user can fix; the message is one line that says how."""

    status: ExitStatus = ExitStatus.ERROR

    @property
    def returncode(self) -> int:
        return int(self.status)


class Interrupted(RotatorError):
    """The run stopped early (a signal, a pause, a cancel); its checkpoints are exact."""

    def __init__(self, message: str, status: ExitStatus) -> None:
        super().__init__(message)
        self.status = status


class ShardLost(Exception):
    """Another worker took this shard over; the batch was rolled back."""


class RunStopped(Exception):
    """The run is no longer active (paused, cancelled or abandoned); the batch rolled back."""

    def __init__(self, state: str, reason: str) -> None:
        super().__init__(f"run {state}" + (f": {reason}" if reason else ""))
        self.state = state
        self.reason = reason
