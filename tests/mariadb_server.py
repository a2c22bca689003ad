"""A private, throwaway MariaDB server with every log on, for tests that read its logs.

The shared server at 127.0.0.1:3306 must not be reconfigured, so tests that
need the general, slow and binary logs start their own ``mariadbd`` in a
temporary directory on a free port, and stop it afterwards.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

STARTUP_SECONDS = 60


@dataclass(frozen=True)
class Server:
    port: int
    root: Path

    @property
    def general_log(self) -> Path:
        return self.root / "general.log"

    @property
    def slow_log(self) -> Path:
        return self.root / "slow.log"

    def url(self, database: str) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str | None = None):  # -> MySQLdb.Connection
        import MySQLdb

        kwargs = {"database": database} if database else {}
        return MySQLdb.connect(host="127.0.0.1", port=self.port, user="root", **kwargs)

    def binlog_text(self) -> str:
        """The binary log as mariadb-binlog prints it (row events stay base64), plus the
        data of any LOAD DATA it carries."""
        loads = self.root / "loads"
        loads.mkdir(exist_ok=True)
        files = sorted(str(p) for p in self.root.glob("binlog.[0-9]*"))
        text = subprocess.run(
            ["mariadb-binlog", f"--local-load={loads}", *files],
            capture_output=True,
            text=True,
            errors="replace",
            check=True,
        ).stdout
        return text + "".join(p.read_text(errors="replace") for p in loads.iterdir())


def available() -> str | None:
    """Why a private server cannot be started here, or None."""
    for tool in ("mariadbd", "mariadb-install-db", "mariadb-binlog"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"{tool} is not installed"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


@contextlib.contextmanager
def private_server(binlog_format: str = "MIXED") -> Iterator[Server]:
    root = Path(tempfile.mkdtemp(prefix="rotator-mariadb-"))
    port = _free_port()
    try:
        subprocess.run(
            [
                _binary("mariadb-install-db"),
                "--no-defaults",
                f"--datadir={root / 'data'}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            check=True,
        )
        proc = subprocess.Popen(
            [
                _binary("mariadbd"),
                "--no-defaults",
                "--user=root",
                f"--datadir={root / 'data'}",
                "--bind-address=127.0.0.1",
                f"--port={port}",
                f"--socket={root / 'sock'}",
                f"--pid-file={root / 'pid'}",
                f"--log-error={root / 'error.log'}",
                "--general-log=1",
                f"--general-log-file={root / 'general.log'}",
                "--slow-query-log=1",
                f"--slow-query-log-file={root / 'slow.log'}",
                "--long-query-time=0",
                f"--log-bin={root / 'binlog'}",
                "--server-id=1",
                f"--binlog-format={binlog_format}",
                "--innodb-buffer-pool-size=32M",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            server = Server(port, root)
            _wait_until_up(server, proc)
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _wait_until_up(server: Server, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            server.connect().close()
            return
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (server.root / "error.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"private mariadbd did not start:\n{log}") from None
            time.sleep(0.2)
