from __future__ import annotations


class RotatorError(Exception):
    """A problem the user can fix; the message is one line that says how."""

    returncode = 1


class Interrupted(RotatorError):
    """The run stopped on a signal; its checkpoints are exact and it can resume."""

    def __init__(self, message: str, returncode: int) -> None:
        super().__init__(message)
        self.returncode = returncode


class ShardLost(Exception):
    """Another process took this shard over; the batch was rolled back."""
