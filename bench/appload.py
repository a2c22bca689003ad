"""The application beside a rotation: fixed-rate single-row statements in a few threads.

Each thread has its own connection (autocommit; psycopg, or MySQLdb on MariaDB/MySQL,
never Django's) and its own schedule:
statement k is due at start + k * interval. Latency is measured from when a
statement was due, not from when it was sent, so a thread held up by a lock
does not hide the statements it could not send meanwhile (no coordinated
omission); the service time (from send) is kept beside it.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Samples:
    """Latencies (seconds, from when each statement was due) and errors, per kind."""

    latency: dict[str, list[float]] = field(default_factory=lambda: {"update": [], "select": []})
    #: from when each statement was sent: its own wait, without the queue behind a slow one
    service: dict[str, list[float]] = field(default_factory=lambda: {"update": [], "select": []})
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def all(self) -> list[float]:
        return sorted(self.latency["update"] + self.latency["select"])


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def conninfo() -> dict[str, object]:
    from django.db import connections

    params = connections["default"].get_connection_params()
    keys = ("dbname", "host", "port", "user", "password")
    return {k: params[k] for k in keys if params.get(k) not in (None, "")}


def _mysql() -> bool:
    from django.db import connections

    return connections["default"].vendor == "mysql"


def connect() -> Any:
    """A new autocommit session of the application's own on the bench database."""
    from django.db import connections

    if _mysql():
        import MySQLdb

        conn = MySQLdb.connect(**connections["default"].get_connection_params())
        conn.autocommit(True)
        return conn
    import psycopg

    return psycopg.connect(autocommit=True, **conninfo())


def driver_errors() -> tuple[type[Exception], ...]:
    if _mysql():
        import MySQLdb

        return (MySQLdb.Error,)
    import psycopg

    return (psycopg.Error,)


def execute(conn: Any, sql: str, params: list[Any] | None = None) -> list[tuple]:
    """Run one statement (placeholders ``%s`` on both drivers); its rows, if any."""
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []
    finally:
        cur.close()


def broken(conn: Any) -> bool:
    if hasattr(conn, "broken"):  # psycopg
        return bool(conn.broken)
    try:
        conn.ping()
    except Exception:  # MySQLdb: the session is gone
        return True
    return False


class Application:
    """``threads`` threads issuing ``rate`` statements/s in total until stopped; with
    ``holds``, as many more threads that each keep one random row locked for
    ``hold_seconds`` at a time (the statements of the others avoid those rows: the
    application waiting on its own locks is not the rotator's doing)."""

    def __init__(
        self, rate: float, threads: int, high: int, holds: int = 0, hold_seconds: float = 3.0
    ) -> None:
        self.interval = threads / rate
        self.high = high
        self.hold_seconds = hold_seconds
        self.samples = Samples()
        #: rows locked so far by the holding threads
        self.held = 0
        self._holding: set[int] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)
        ] + [threading.Thread(target=self._hold, args=(n,), daemon=True) for n in range(holds)]
        self._started = 0.0

    def _hold(self, n: int) -> None:
        rng = random.Random(1000 + n)
        conn = connect()
        try:
            while not self._stop.is_set():
                pk = rng.randint(1, self.high)
                with self._lock:
                    self._holding.add(pk)
                    self.held += 1
                execute(conn, "BEGIN")
                execute(conn, "SELECT 1 FROM tickets_ticket WHERE id = %s FOR UPDATE", [pk])
                self._stop.wait(self.hold_seconds)
                execute(conn, "COMMIT")
                with self._lock:
                    self._holding.discard(pk)
        finally:
            conn.close()

    def _pick(self, rng: random.Random) -> int:
        while True:
            pk = rng.randint(1, self.high)
            with self._lock:
                if pk not in self._holding:
                    return pk

    def __enter__(self) -> Application:
        self._started = time.perf_counter()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self.samples.seconds = time.perf_counter() - self._started

    def _run(self, n: int) -> None:
        rng = random.Random(n)
        errors = driver_errors()
        conn = connect()
        # Threads start staggered so that their statements interleave evenly.
        due = time.perf_counter() + self.interval * n / len(self._threads)
        while not self._stop.is_set():
            time.sleep(max(0.0, due - time.perf_counter()))
            kind = "update" if rng.random() < 0.5 else "select"
            pk = self._pick(rng)
            sent = time.perf_counter()
            try:
                if kind == "update":
                    execute(
                        conn,
                        "UPDATE tickets_ticket SET subject = %s WHERE id = %s",
                        [f"seen {rng.getrandbits(32):08x}", pk],
                    )
                else:
                    execute(
                        conn, "SELECT id, subject, token FROM tickets_ticket WHERE id = %s", [pk]
                    )
                end = time.perf_counter()
                with self._lock:
                    self.samples.latency[kind].append(end - due)
                    self.samples.service[kind].append(end - sent)
            except errors as exc:
                with self._lock:
                    self.samples.errors[type(exc).__name__] += 1
                if broken(conn):
                    conn = connect()
            due += self.interval
        conn.close()
