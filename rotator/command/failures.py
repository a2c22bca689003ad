"""What a command's work raises, as the one-line CommandError (and exit status) the
operator reads: shared by rotate_field (and its subclasses) and revoke_rows."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.core.management.base import CommandError
from django.db import DatabaseError, connections
from django.utils.connection import ConnectionDoesNotExist

from rotator.errors import ExitStatus, RotatorError
from rotator.service.connectivity import check_reachable, explain_lost, explain_rotator_error


@contextlib.contextmanager
def one_line_errors(alias: str, verb: str) -> Iterator[None]:
    """Run a command's work on database ``alias`` (checked first: known, reachable);
    ``verb``: what the command does to rows ("rotated", "revoked"), for Ctrl-C's line."""
    try:
        connections[alias]
    except ConnectionDoesNotExist:
        known = ", ".join(sorted(connections.settings))
        raise CommandError(f"unknown database {alias!r}; settings.DATABASES has: {known}") from None
    try:
        check_reachable(alias)
        yield
    except RotatorError as exc:
        raise CommandError(explain_rotator_error(alias, exc), returncode=exc.returncode) from exc
    except DatabaseError as exc:
        raise CommandError(explain_lost(alias, exc)) from exc
    except KeyboardInterrupt:
        # Only reachable before the workers start (they stop on SIGINT themselves);
        # planning is one transaction, so nothing was changed.
        raise CommandError(
            f"Interrupted before any row was {verb}", returncode=int(ExitStatus.SIGINT)
        ) from None
