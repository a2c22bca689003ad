"""Pause checks for ``--pause-when`` in tests; a test sets ``REASON`` and clears it."""

from __future__ import annotations

import threading
import time

from django.db import connection

REASON: str | None = None
#: One (time.monotonic(), inside a transaction?, autocommit?) per call.
CALLS: list[tuple[float, bool, bool]] = []
_lock = threading.Lock()


def check() -> str | None:
    in_transaction = connection.in_atomic_block
    autocommit = connection.get_autocommit()
    with _lock:
        CALLS.append((time.monotonic(), in_transaction, autocommit))
    return REASON


def broken() -> str | None:
    raise ValueError("no such metric\nsecond line of detail")


def wrong_type() -> object:
    return 42


NOT_CALLABLE = 3


#: hang() touches this file (from the environment) when it starts, so a test knows.
HANG_MARK = "ROTATOR_TEST_HANG_MARK"


def hang() -> str | None:
    """A check that never answers (a metrics endpoint that is down, say)."""
    import os
    from pathlib import Path

    mark = os.environ.get(HANG_MARK)
    if mark:
        Path(mark).touch()
    time.sleep(3600)
    return None


def leaky() -> str | None:
    raise RuntimeError("cannot reach https://metrics.example/?token=s3cr3t-token")
