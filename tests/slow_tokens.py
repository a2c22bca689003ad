"""A slow token generator, so that a browser can watch a run go (and pause it)."""

from __future__ import annotations

import time
import uuid

#: Seconds per value: 100-row batches take a tenth of a second.
DELAY = 0.001


def slow_uuid() -> uuid.UUID:
    time.sleep(DELAY)
    return uuid.uuid4()
