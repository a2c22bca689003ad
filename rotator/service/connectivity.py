"""Reach the database once, directly, before the run uses it.

Django's PostgreSQL pool connects in the background and, when the server
cannot be reached, logs one line per attempt and gives up with "couldn't get
a connection after N sec", which hides the cause. One direct connection
attempt fails at once (or after ``connect_timeout``) with the server's own
words.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, OperationalError, connections

from rotator.errors import RotatorError
from rotator.sql import Builder, builder_for


class Unreachable(RotatorError):
    """The database could not be reached before anything started."""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _where(alias: str) -> str:
    connection = connections[alias]
    try:
        builder = builder_for(connection)
    except RotatorError:  # the builder's driver is missing: say where, not that
        builder = Builder()
    return builder.describe_location(connection)


def probe(alias: str) -> None:
    """Connect once, bypassing any pool; raise the driver's error if that fails."""
    connection = connections[alias]
    if getattr(connection, "pool", None) is None:
        connection.ensure_connection()
        return
    with connection.wrap_database_errors:
        # The driver module (Database) is an attribute of every backend's wrapper class.
        connection.Database.connect(  # type: ignore[attr-defined]
            **connection.get_connection_params()
        ).close()


def check_reachable(alias: str) -> None:
    """Raise a one-line RotatorError with the real cause when ``alias`` cannot be reached."""
    try:
        probe(alias)
    except (DatabaseError, ImproperlyConfigured) as exc:
        raise Unreachable(
            f"database {alias!r}: cannot connect ({_where(alias)}): {first_line(exc)}; "
            "check DATABASE_URL (or settings.DATABASES) and that the server is running"
        ) from exc


def is_pool_timeout(exc: BaseException) -> bool:
    names = {type(e).__name__ for e in (exc, exc.__cause__) if e is not None}
    return "PoolTimeout" in names


def unreachable(alias: str, exc: BaseException | None) -> str | None:
    """After a lost connection or a pool timeout: why the server cannot be reached, if so."""
    if not isinstance(exc, OperationalError):
        return None
    try:
        probe(alias)
    except (DatabaseError, ImproperlyConfigured) as cause:
        return f"the server ({_where(alias)}) is unreachable: {first_line(cause)}"
    return None


def _explained(alias: str, exc: BaseException) -> str:
    """``exc``'s first line; a pool timeout replaced by, a lost connection followed by, why."""
    lost = first_line(exc)
    reason = unreachable(alias, exc)
    if reason is None:
        return lost
    return reason if is_pool_timeout(exc) else f"{lost}, and {reason}"


def explain_lost(alias: str, exc: DatabaseError) -> str:
    """One line for a database error that reached the command."""
    return f"database {alias!r}: {_explained(alias, exc)}"


def explain_rotator_error(alias: str, exc: BaseException) -> str:
    """The engine's one line, saying so when the server has become unreachable."""
    cause = exc.__cause__
    if isinstance(exc, Unreachable) or cause is None:
        return str(exc)  # Unreachable already says why
    return str(exc).replace(first_line(cause), _explained(alias, cause))
