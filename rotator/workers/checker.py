"""The pause checks' own thread: a check that hangs holds up neither a worker nor Ctrl-C.

A worker's thread runs its batches; a check run there would stall that worker
for as long as the check hangs, and the worker's last statements (releasing
its shard) would queue behind it. So the checks run on one daemon thread,
one call at a time; the event loop waits for the answer with a timeout and
can stop waiting at once (throttle.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

from django.db import connections

#: Seconds the thread waits for work before it ends (and closes its connection).
IDLE = 5.0


class Checker:
    """Runs ``run`` on a daemon thread of its own, one call at a time.

    The thread ends (closing its database connection) after IDLE seconds without
    work; a call that hangs keeps it, and only it, busy: being a daemon, it does
    not hold up the process's exit.
    """

    def __init__(self, run: Callable[[], str | None]) -> None:
        self.run = run
        # None asks the thread to end.
        self.jobs: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]] | None]
        self.jobs = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def submit(self) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self.lock:
            self.jobs.put((loop, future))
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._serve, name="rotator-pause-checks", daemon=True
                )
                self.thread.start()
        return future

    def _serve(self) -> None:
        try:
            while True:
                try:
                    job = self.jobs.get(timeout=IDLE)
                except queue.Empty:
                    job = None
                if job is None:
                    with self.lock:
                        if self.jobs.empty():
                            self.thread = None
                            return
                    continue
                loop, future = job
                try:
                    outcome: tuple[bool, Any] = (True, self.run())
                except BaseException as exc:  # handed to the event loop, raised there
                    outcome = (False, exc)
                with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                    loop.call_soon_threadsafe(_settle, future, outcome)
        finally:
            connections.close_all()  # this thread's connections only

    def close(self, wait: float = 1.0) -> None:
        """End the thread (and its connection) unless a check hangs it; wait up to ``wait``."""
        with self.lock:
            thread = self.thread
            if thread is None:
                return
            self.jobs.put(None)
        thread.join(wait)


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():  # given up on (a stop, or the loop ending)
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
