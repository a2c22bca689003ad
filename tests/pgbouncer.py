"""A private PgBouncer (Debian's ``pgbouncer``) in front of the test's PostgreSQL.

It listens on a port of its own and forwards every database name to the
server the test suite uses, in ``transaction`` or ``session`` pool mode, with
few server connections so that clients share them as they do in production.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.db import connection

from tests.environment import need

BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Bouncer:
    port: int
    root: Path
    mode: str

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    @property
    def log(self) -> str:
        path = self.root / "pgbouncer.log"
        return path.read_text() if path.exists() else ""


def _user(host: str) -> str | None:
    """PgBouncer refuses to run as root: it switches to a user of the machine, the owner
    of the server's socket directory if it has one (the embedded server's is private)."""
    if os.geteuid() != 0:
        return None
    if host.startswith("/"):
        return pwd.getpwuid(os.stat(host).st_uid).pw_name
    for name in ("postgres", "pgserver", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    return None


@contextlib.contextmanager
def pgbouncer(mode: str = "transaction", pool_size: int = 3) -> Iterator[Bouncer]:
    """Start PgBouncer in ``mode`` in front of the test database's server."""
    if not os.access(BINARY, os.X_OK):
        need("pgbouncer", f"PgBouncer is not installed ({BINARY}); apt-get install pgbouncer")
    params = connection.get_connection_params()
    host = str(params.get("host") or "127.0.0.1")
    port = int(params.get("port") or 5432)
    root = Path(tempfile.mkdtemp(prefix="rotator-bouncer-", dir="/tmp"))
    user = _user(host)
    bouncer = Bouncer(_free_port(), root, mode)
    (root / "users.txt").write_text('"postgres" ""\n')
    (root / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={host} port={port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {bouncer.port}\n"
        f"unix_socket_dir = {root}\n"
        f"logfile = {root}/pgbouncer.log\npidfile = {root}/pgbouncer.pid\n"
        f"auth_type = trust\nauth_file = {root}/users.txt\n"
        f"pool_mode = {mode}\n"
        f"default_pool_size = {pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n"
        "max_client_conn = 200\n"
        # psycopg sends no startup options PgBouncer would refuse; keep the defaults.
        "server_lifetime = 3600\nserver_idle_timeout = 600\n" + (f"user = {user}\n" if user else "")
    )
    if user:
        entry = pwd.getpwnam(user)
        for path in (root, root / "users.txt", root / "pgbouncer.ini"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    proc = subprocess.Popen(
        [BINARY, str(root / "pgbouncer.ini")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", bouncer.port)) == 0:
                    break
            assert proc.poll() is None, f"pgbouncer exited: {bouncer.log}"
            assert time.monotonic() < deadline, f"pgbouncer did not listen: {bouncer.log}"
            time.sleep(0.05)
        yield bouncer
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)
