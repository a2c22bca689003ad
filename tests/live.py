"""An application beside the rotator: its own connections, transactions and threads.

The tests in test_live_table.py, test_faults.py and test_server_log.py play
the application that keeps using the table while it is rotated. Everything
here talks to the test database through psycopg directly (autocommit unless a
test opens a transaction), never through Django's connections, so it cannot
share a session, a transaction or a pool slot with the rotator's workers.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from django.db import connection

TABLE = "tickets_ticket"
TIMEOUT = 20.0  # seconds for any one wait


def conninfo() -> dict[str, Any]:
    """Keyword arguments for psycopg.connect() to the test database."""
    params = connection.get_connection_params()
    keys = ("dbname", "host", "port", "user", "password")
    return {k: params[k] for k in keys if params.get(k) not in (None, "")}


def connect(**settings: str) -> psycopg.Connection:
    """A new autocommit session on the test database, with ``SET name = value`` applied."""
    conn = psycopg.connect(autocommit=True, **conninfo())
    for name, value in settings.items():
        conn.execute(f"SET {name} = '{value}'")
    return conn


def backend_pid(conn: psycopg.Connection) -> int:
    return conn.info.backend_pid


def blocked_by(pid: int) -> list[int]:
    """Backends of the test database waiting on a lock that ``pid`` holds."""
    with connect() as conn:
        found = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND %s = ANY(pg_blocking_pids(pid))",
            [pid],
        ).fetchall()
    return [row[0] for row in found]


def wait_until_blocking(pid: int, done: Callable[[], bool] = lambda: False) -> bool:
    """Wait until some backend waits on ``pid``'s locks (True) or ``done()`` (False)."""
    deadline = time.monotonic() + TIMEOUT
    while not blocked_by(pid):
        if done():
            return False
        assert time.monotonic() < deadline, f"no backend waited on pid {pid} in {TIMEOUT} s"
        time.sleep(0.01)
    return True


def terminate(pid: int) -> bool:
    """``pg_terminate_backend(pid)`` from a session of its own."""
    with connect() as conn:
        return bool(conn.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0])


def deadlocks() -> int:
    """Deadlocks the server has detected in the test database so far."""
    with connect() as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()[0]


class Background(threading.Thread):
    """A thread whose exception is re-raised by ``join()``, so a test sees it."""

    def __init__(self, target: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self._fn = target
        self.error: BaseException | None = None
        self.result: Any = None

    def run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:  # re-raised in the test's thread
            self.error = exc

    def join(self, timeout: float | None = TIMEOUT) -> None:  # type: ignore[override]
        super().join(timeout)
        assert not self.is_alive(), f"background thread still running after {timeout} s"
        if self.error is not None:
            raise self.error


# The live-table application: deletes, updates and inserts rows while a run goes on.


@dataclass
class Traffic:
    """What the application did; every id is recorded by the thread that touched it."""

    deleted: set[int] = field(default_factory=set)
    #: id -> the last token the application gave that row
    retokened: dict[int, uuid.UUID] = field(default_factory=dict)
    #: id -> the last subject the application wrote
    subjects: dict[int, str] = field(default_factory=dict)
    #: id -> the token the application inserted the row with
    inserted: dict[int, uuid.UUID] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: ids deleted or re-tokened: each row gets at most one of the two
    claimed: set[int] = field(default_factory=set)

    def claim(self, pk: int) -> bool:
        with self.lock:
            if pk in self.claimed:
                return False
            self.claimed.add(pk)
            return True


def _ahead_of_cursors(conn: psycopg.Connection, rng: random.Random, reach: int) -> int | None:
    """A key just ahead of a running shard's cursor: the rows the next batch will take."""
    shards = conn.execute(
        "SELECT coalesce(cursor, lower, '0'), upper FROM rotator_shard WHERE state = 'running'"
    ).fetchall()
    if not shards:
        return None
    cursor, upper = rng.choice(shards)
    lo, hi = int(cursor) + 1, min(int(upper), int(cursor) + reach)
    return rng.randint(lo, hi) if lo <= hi else None


class Application:
    """Threads that delete, re-token, update and insert rows until ``stop()``.

    Deletes and re-tokens aim just ahead of the workers' cursors and keep their
    row locked for ``hold`` seconds before committing, as an application
    transaction doing a little work would: exactly the rows whose windows are
    being read and updated at that moment.
    """

    def __init__(self, *, reach: int, hold: float = 0.02, high_water: int, seed: int = 6) -> None:
        self.reach = reach
        self.hold = hold
        self.high_water = high_water
        self.traffic = Traffic()
        self._stop = threading.Event()
        self._threads = [
            Background(lambda: self._loop(self._delete, seed)),
            Background(lambda: self._loop(self._retoken, seed + 1)),
            Background(lambda: self._loop(self._update_subject, seed + 2)),
            Background(lambda: self._loop(self._insert, seed + 3)),
        ]

    def __enter__(self) -> Application:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> Traffic:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        return self.traffic

    def _loop(self, action: Callable[[psycopg.Connection, random.Random], None], seed: int) -> None:
        rng = random.Random(seed)
        with connect() as conn:
            while not self._stop.is_set():
                try:
                    action(conn, rng)
                except psycopg.Error as exc:
                    self.traffic.errors.append(exc)
                time.sleep(0.002)

    def _target(self, conn: psycopg.Connection, rng: random.Random) -> int | None:
        pk = _ahead_of_cursors(conn, rng, self.reach)
        if pk is None or not self.traffic.claim(pk):
            return None
        return pk

    def _delete(self, conn: psycopg.Connection, rng: random.Random) -> None:
        pk = self._target(conn, rng)
        if pk is None:
            return
        with conn.transaction():
            gone = conn.execute(f"DELETE FROM {TABLE} WHERE id = %s", [pk]).rowcount
            time.sleep(self.hold)
        if gone:
            with self.traffic.lock:
                self.traffic.deleted.add(pk)

    def _retoken(self, conn: psycopg.Connection, rng: random.Random) -> None:
        pk = self._target(conn, rng)
        if pk is None:
            return
        token = uuid.uuid4()  # the application issues this user a fresh token
        with conn.transaction():
            changed = conn.execute(
                f"UPDATE {TABLE} SET token = %s WHERE id = %s", [token, pk]
            ).rowcount
            time.sleep(self.hold)
        if changed:
            with self.traffic.lock:
                self.traffic.retokened[pk] = token

    def _update_subject(self, conn: psycopg.Connection, rng: random.Random) -> None:
        pk = rng.randint(1, self.high_water)
        subject = f"app {rng.getrandbits(32):08x}"
        # One thread writes subjects, so the last one recorded is the last one committed.
        if conn.execute(f"UPDATE {TABLE} SET subject = %s WHERE id = %s", [subject, pk]).rowcount:
            with self.traffic.lock:
                self.traffic.subjects[pk] = subject

    def _insert(self, conn: psycopg.Connection, rng: random.Random) -> None:
        if _ahead_of_cursors(conn, rng, 1) is None:
            return  # not before the plan: a row inserted then would be a planned row
        token = uuid.uuid4()
        (pk,) = conn.execute(
            f"INSERT INTO {TABLE} (token, subject, created_at) VALUES (%s, 'inserted', now()) "
            "RETURNING id",
            [token],
        ).fetchone()
        with self.traffic.lock:
            self.traffic.inserted[pk] = token
        time.sleep(0.02)


def final_rows() -> dict[int, tuple[uuid.UUID, str, int]]:
    """Every ticket as id -> (token, subject, rotations) (needs tests/counting.py installed)."""
    with connect() as conn:
        found = conn.execute(f"SELECT id, token, subject, rotations FROM {TABLE}").fetchall()
    return {pk: (token, subject, n) for pk, token, subject, n in found}


# A PostgreSQL server of the test's own, which it may stop and start at will.


def _system_user() -> str | None:
    """PostgreSQL refuses to run as root; pgserver's own user does (it creates one)."""
    if os.geteuid() != 0:
        return None
    from pgserver.utils import ensure_user_exists

    ensure_user_exists("pgserver")
    return "pgserver"


class ScratchServer:
    """A throw-away cluster in a temporary directory, on a Unix socket only."""

    def __init__(self) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH

        self.bin = POSTGRES_BIN_PATH
        self.user = _system_user()
        self.root = Path(tempfile.mkdtemp(prefix="rotator-pg-", dir="/tmp"))
        self.pgdata = self.root / "data"
        self.log = self.root / "server.log"
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str) -> None:
        import subprocess

        subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            check=True,
            user=self.user,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )

    def init(self, template: Path | None = None) -> None:
        """A new cluster, or a copy of ``template`` (the data directory of a stopped one)."""
        if template is None:
            pgdata = str(self.pgdata)
            self._run("initdb", "-D", pgdata, "-U", "postgres", "--auth=trust", "-E", "UTF8")
            return
        import subprocess

        # cp -a keeps the owner (the server's user when the tests run as root) and the 0700 mode.
        subprocess.run(["cp", "-a", str(template), str(self.pgdata)], check=True, timeout=60)

    def start(self) -> None:
        options = f"-h '' -k {self.root} -c fsync=off -c full_page_writes=off"
        self._run(
            "pg_ctl", "-D", str(self.pgdata), "-l", str(self.log), "-w", "-o", options, "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "stop")

    def url(self, dbname: str = "postgres") -> str:
        from urllib.parse import quote

        return f"postgres://postgres@{quote(str(self.root), safe='')}/{dbname}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host=str(self.root), user="postgres", dbname=dbname, autocommit=True)

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def scratch_server(template: Path | None = None) -> Iterator[ScratchServer]:
    server = ScratchServer()
    try:
        server.init(template)
        server.start()
        yield server
    finally:
        server.destroy()


def keys() -> list[int]:
    """Every ticket's key in order (ids go on from earlier tests: a flush keeps sequences)."""
    from tickets.models import Ticket

    return list(Ticket.objects.order_by("pk").values_list("pk", flat=True))
