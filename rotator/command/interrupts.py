"""Ctrl-C and SIGTERM while a rotation runs: the command's business, not the library's.

The first signal lets in-flight batches commit and stops the workers; a
second cancels the in-flight statements (they roll back) and ends the
process within ``HARD_EXIT_AFTER`` seconds whatever the server does. Every
batch is one transaction, so either way the checkpoints are exact and the
same command resumes. After the workers, the run's final check (and any
check: ``stopped_by_signals``) is stopped by the same signals, its statement
cancelled on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Protocol

from rotator.errors import ExitStatus
from rotator.service.rotation import Stopper
from rotator.workers.engine import Session

#: After a second signal, the process ends this many seconds later at the latest.
HARD_EXIT_AFTER = 3.0
STATUSES = {signal.SIGINT: ExitStatus.SIGINT, signal.SIGTERM: ExitStatus.SIGTERM}


class SignalStopper(Stopper):
    """A Stopper that SIGINT and SIGTERM pull while the workers run."""

    def __init__(self) -> None:
        super().__init__()
        self.signals: list[int] = []
        self._installed: list[int] = []

    def attach(self, loop: asyncio.AbstractEventLoop, session: Session) -> None:
        super().attach(loop, session)
        for signum in STATUSES:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self._on_signal, signum, session)
                self._installed.append(signum)

    def detach(self) -> None:
        loop = self._loop
        for signum in self._installed:
            if loop is not None:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(signum)
        self._installed.clear()
        super().detach()

    def finishing(self, what: str) -> contextlib.AbstractContextManager[None]:
        # The workers' loop, and its signal handlers, are gone by then.
        return stopped_by_signals(self, what)

    def _on_signal(self, signum: int, session: Session) -> None:
        self.signals.append(signum)
        if len(self.signals) == 1:
            self.stop(signal.Signals(signum).name, STATUSES[signal.Signals(signum)])
            session.progress.message(
                "Stopping: letting in-flight batches commit (press Ctrl-C again to abort them)."
            )
            return
        session.progress.message("Aborting: in-flight batches roll back.")
        # Whatever the server does (an unresponsive backend), end soon: every
        # batch is one transaction, so a hard exit loses nothing committed.
        status = int(STATUSES[signal.Signals(self.signals[0])])
        timer = threading.Timer(HARD_EXIT_AFTER, os._exit, args=(status,))
        timer.daemon = True
        timer.start()
        threading.Thread(target=self.abort, daemon=True).start()


class Stoppable(Protocol):
    def stop(self, reason: str, status: ExitStatus) -> None: ...


def _hard_exit(status: int, line: str) -> None:
    with contextlib.suppress(Exception):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    os._exit(status)


@contextlib.contextmanager
def stopped_by_signals(stopper: Stoppable, what: str) -> Iterator[None]:
    """While a check runs: SIGINT and SIGTERM stop it (set up from the main thread only).

    Python runs a signal handler in the main thread between bytecodes, and the main
    thread may be inside the driver's C code for the whole statement (mysqlclient does
    not return on a signal). So the handlers do nothing themselves: the signal's number
    reaches a watcher thread through ``signal.set_wakeup_fd``, written by the C-level
    handler at once, and that thread stops the check (which cancels the statement)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def on_signal(signum: int) -> None:
        seen.append(signum)
        status = STATUSES[signal.Signals(seen[0])]
        line = f"Interrupted by {signal.Signals(seen[0]).name}: {what}"
        if len(seen) > 1:
            _hard_exit(int(status), line)
        stopper.stop(signal.Signals(signum).name, status)
        timer = threading.Timer(HARD_EXIT_AFTER, _hard_exit, args=(int(status), line))
        timer.daemon = True
        timer.start()

    wake_r, wake_w = os.pipe()
    quit_r, quit_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    watcher = threading.Thread(
        target=_watch, args=(wake_r, quit_r, on_signal), name="rotator-check-signals", daemon=True
    )
    watcher.start()
    previous_fd = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    previous = {signum: signal.signal(signum, _noted) for signum in STATUSES}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_fd)
        os.write(quit_w, b"q")
        watcher.join(timeout=1)
        for fd in (wake_r, wake_w, quit_r, quit_w):
            os.close(fd)


def _noted(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: nothing (the watcher thread acted on the signal)."""


def _watch(wake: int, quit_: int, on_signal: Callable[[int], None]) -> None:
    while True:
        ready, _, _ = select.select([wake, quit_], [], [])
        if quit_ in ready:
            return
        with contextlib.suppress(BlockingIOError):
            for signum in os.read(wake, 64):
                if signum in {int(known) for known in STATUSES}:
                    on_signal(signum)
