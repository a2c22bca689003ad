"""Ctrl-C and SIGTERM while a rotation runs: the command's business, not the library's.

The first signal lets in-flight batches commit and stops the workers; a
second cancels the in-flight statements (they roll back) and ends the
process within ``HARD_EXIT_AFTER`` seconds whatever the server does. Every
batch is one transaction, so either way the checkpoints are exact and the
same command resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading

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
