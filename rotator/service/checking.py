"""Stopping a check of the table (``--verify``) and hearing how far it got.

A check only reads, so stopping it loses nothing. ``CheckStopper.stop()`` may
be called from a signal handler or another thread: it cancels the statement
running on the check's connection on the server (``Builder.interrupter``), again
every ``RETRY_SECONDS`` until the check gives its connection back (a stop that
lands between two statements is caught before the next), and the check raises
``Interrupted`` with the stopper's status.

The check reports each step to ``CheckEvents`` (the command shows them);
the service never prints.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

from django.db.backends.base.base import BaseDatabaseWrapper

from rotator.errors import ExitStatus, Interrupted
from rotator.sql.base import Builder

#: How often a stop cancels the running statement again until the check has stopped.
RETRY_SECONDS = 0.5


@runtime_checkable
class CheckEvents(Protocol):
    def check_step(self, done: int, steps: int, running: str, seconds: float, share: float) -> None:
        """``done`` of the check's ``steps`` are done, ``seconds`` after it began, about
        ``share`` (0..1) of its work; ``running`` says what it does now ("" when
        ``done == steps``: the check is over)."""


class NoCheckEvents:
    def check_step(self, done: int, steps: int, running: str, seconds: float, share: float) -> None:
        pass


class CheckStopper:
    """Stops a check from any thread (or a signal handler), cancelling its statement."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.status = ExitStatus.ERROR
        self._bound: Callable[[], None] | None = None
        self._lock = threading.Lock()

    @property
    def stopped(self) -> bool:
        return self.reason is not None

    def stop(self, reason: str, status: ExitStatus) -> None:
        if self.reason is not None:
            return
        self.reason, self.status = reason, status
        threading.Thread(target=self._cancel, name="rotator-check-cancel", daemon=True).start()

    def _cancel(self) -> None:
        while True:
            with self._lock:
                cancel = self._bound
            if cancel is None:
                return
            try:
                cancel()
            except Exception:  # a connection closing meanwhile: nothing to cancel
                return
            time.sleep(RETRY_SECONDS)

    @contextmanager
    def bound(self, connection: BaseDatabaseWrapper, builder: Builder) -> Iterator[None]:
        """While the check runs its statements on ``connection``."""
        connection.ensure_connection()
        cancel = builder.interrupter(connection)
        with self._lock:
            self._bound = cancel
        try:
            yield
        finally:
            with self._lock:
                self._bound = None

    def interrupted(self, what: str) -> Interrupted:
        return Interrupted(f"Interrupted by {self.reason}: {what}", self.status)

    def checkpoint(self, what: str) -> None:
        if self.stopped:
            raise self.interrupted(what)
