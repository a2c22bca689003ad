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
