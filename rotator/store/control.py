"""Pause, resume and cancel a run from anywhere that reaches its database; purge old runs.

These only set the run's state (and why): every batch transaction of every
worker reads it, so a pause or a cancel reaches workers in other processes
and on other hosts within one batch. Nothing already rotated is undone.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from rotator.errors import RotatorError
from rotator.models import UNFINISHED, Run
from rotator.service.target import Target
from rotator.store.claims import HOST
from rotator.store.lifecycle import active_run, runs_for


def who(flag: str) -> str:
    """The operator, for stop_reason: the flag, host and pid of this command."""
    return f"{flag} from {HOST} pid {os.getpid()}"


def _set(run: Run, states: tuple[str, ...], state: str, reason: str) -> bool:
    """Move ``run`` to ``state`` if it is in one of ``states``; True if it moved."""
    changes: dict[str, object] = {"state": state, "stop_reason": reason[:200]}
    if state == Run.State.ABANDONED:
        changes["finished_at"] = timezone.now()
    moved = Run.objects.using(run._state.db).filter(pk=run.pk, state__in=states).update(**changes)
    run.refresh_from_db(using=run._state.db)
    return moved == 1


def pause(run: Run, by: str) -> bool:
    """Pause an active run; ``by`` (who did it) is its stop_reason, shown by the engine."""
    return _set(run, (Run.State.ACTIVE,), Run.State.PAUSED, by)


def resume(run: Run) -> bool:
    """Clear the pause; the workers start again when the command is run again."""
    return _set(run, (Run.State.PAUSED,), Run.State.ACTIVE, "")


def cancel(run: Run, by: str) -> bool:
    return _set(run, UNFINISHED, Run.State.ABANDONED, f"cancelled: {by}")


def unfinished(target: Target, flag: str) -> Run:
    run = active_run(target)
    if run is None:
        last = runs_for(target).order_by("-pk").first()
        since = f" (its last run, {last.pk}, is {last.state})" if last else ""
        raise RotatorError(
            f"{target.label} has no unfinished run to {flag}{since}; see them all with --status"
        )
    return run


def pause_target(target: Target) -> Run:
    run = unfinished(target, "pause")
    if run.state == Run.State.PAUSED:
        raise RotatorError(
            f"run {run.pk} of {target.label} is already paused; run the command to resume it"
        )
    if not pause(run, who("--pause")):
        raise RotatorError(f"run {run.pk} of {target.label} changed state; see --status")
    return run


def cancel_target(target: Target) -> Run:
    run = unfinished(target, "cancel")
    if not cancel(run, who("--cancel")):
        raise RotatorError(f"run {run.pk} of {target.label} changed state; see --status")
    return run


def confirm(question: str, yes: bool, tty: bool, ask: Callable[[str], str], flag: str) -> None:
    """Go on only if the operator said yes: --yes, or 'yes' typed on a terminal."""
    if yes:
        return
    if not tty:
        raise RotatorError(f"{question}; pass --yes to confirm {flag} when not on a terminal")
    if ask(f"{question}. Type 'yes' to go on: ").strip().lower() != "yes":
        raise RotatorError(f"{flag} not confirmed; nothing was changed")


def restart_question(target: Target) -> str | None:
    """What --restart would throw away, or None when there is no unfinished run."""
    run = active_run(target)
    if run is None:
        return None
    return (
        f"--restart abandons run {run.pk} of {target.label} ({run.state}, "
        f"{run.rows_done():,}/{run.total_rows:,} rows rotated) and rotates every row again"
    )


def purge(target: Target, older_than_days: float) -> tuple[int, int]:
    """Delete finished and abandoned runs (with shards and fingerprints) older than N days.

    Returns (runs, fingerprints) deleted. Unfinished runs are never purged.
    """
    if older_than_days < 0:
        raise RotatorError(f"--purge needs a number of days >= 0, got {older_than_days!r}")
    cutoff = timezone.now() - timedelta(days=older_than_days)
    old = runs_for(target).exclude(state__in=UNFINISHED).filter(created_at__lte=cutoff)
    with transaction.atomic(using=target.alias):
        _, deleted = old.delete()
    return deleted.get(Run._meta.label, 0), deleted.get("rotator.Fingerprint", 0)
