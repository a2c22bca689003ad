"""Passing faults of a live database, by class: what each builder maps its driver's errors to.

A deadlock, a serialization failure, a lock or statement timeout, a
terminated backend or a restarting server are normal on a live database: the
batch rolls back and is retried with fresh values. Each builder maps its
driver's errors (by SQLSTATE or error code, never by message) to a kind; the
engine decides what to do with the kind.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    LOCK = "lock"  # a lock wait timed out: retry smaller, after a pause
    CONFLICT = "conflict"  # deadlock, serialization failure: retry after a pause
    TIMEOUT = "timeout"  # a statement timeout the rotator did not ask for: retry smaller
    COLLISION = "collision"  # a new value was taken meanwhile: retry with other values
    CONNECTION = "connection"  # the session is gone: reconnect, then retry


@dataclass(frozen=True)
class Fault:
    kind: Kind
    what: str  # for people: "deadlock detected", "terminated by the server", ...

    @property
    def shrinks(self) -> bool:
        return self.kind in (Kind.LOCK, Kind.TIMEOUT)
