"""What a driver connection's session holds for the rotator: the fingerprint key.

Shared by every builder instance (``builder_for`` makes a new one per call), so
that a key loaded through one is known to all: a builder that trusted its own
memory of a connection another had reloaded would fingerprint under the wrong key.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any


class SessionKeys:
    """Per driver connection: sha256 of the fingerprint key its session table holds."""

    def __init__(self) -> None:
        self._held: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, raw: Any) -> str | None:
        with self._lock:
            return self._held.get(raw)

    def set(self, raw: Any, held: str) -> None:
        with self._lock:
            self._held[raw] = held

    def forget(self, raw: Any) -> None:
        with self._lock:
            self._held.pop(raw, None)


SESSION_KEYS = SessionKeys()
