"""Generators for the tests: each misbehaves in one way, or records what it made."""

from __future__ import annotations

import secrets

#: Every value that ``recorded()`` made, to check hashes against.
MADE: list[str] = []
LEAK = "LEAKED-SECRET-"


def none() -> None:
    return None


def boom() -> str:
    raise ValueError(f"cannot make {LEAK}boom")


def not_a_uuid() -> str:
    return f"{LEAK}not-a-uuid"


def recorded() -> str:
    value = secrets.token_urlsafe(24)
    MADE.append(value)
    return value


def long_hex() -> str:
    return secrets.token_hex(16)
