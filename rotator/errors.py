from __future__ import annotations


class RotatorError(Exception):
    """A problem the user can fix; the message is one line that says how."""

    returncode = 1


class Interrupted(RotatorError):
    """The run stopped early (a signal, a pause, a cancel); its checkpoints are exact."""

    def __init__(self, message: str, returncode: int) -> None:
        super().__init__(message)
        self.returncode = returncode


class ShardLost(Exception):
    """Another worker took this shard over; the batch was rolled back."""


class RunStopped(Exception):
    """The run is no longer active (paused, cancelled or abandoned); the batch rolled back."""

    def __init__(self, state: str, reason: str) -> None:
        super().__init__(f"run {state}" + (f": {reason}" if reason else ""))
        self.state = state
        self.reason = reason
