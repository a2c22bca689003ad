"""Stop the embedded server once no process uses it, even after a ``kill -9`` of the last one.

pgserver stops the server from an ``atexit`` hook of the last process that
uses it, and a process killed with SIGKILL runs no hook. So the first process
that starts the server also starts this small detached process: it polls the
pids in pgserver's ``.handle_pids.json`` and, when none is alive, stops the
server (under pgserver's lock, so that a process joining at that moment either
keeps it running or starts it again). It exits when the server has stopped,
whoever stopped it.

    python -m asyncproj.embedded.watchdog PGDATA
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from .processes import alive

POLL = 1.0  # seconds between looks at the handle list
PIDFILE = ".watchdog.pid"
MODULE = "asyncproj.embedded.watchdog"


def _handles(pgdata: Path) -> list[int]:
    try:
        return [int(pid) for pid in json.loads((pgdata / ".handle_pids.json").read_text() or "[]")]
    except (OSError, ValueError):
        return []


def _postmaster(pgdata: Path) -> int | None:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if alive(pid) else None


def _is_watchdog(pid: int, pgdata: Path) -> bool:
    try:
        cmdline = psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return MODULE in cmdline and str(pgdata) in cmdline


def ensure_running(pgdata: Path) -> None:
    """Start the watchdog of ``pgdata`` unless one already runs. Call with pgserver's lock held."""
    try:
        pid = int((pgdata / PIDFILE).read_text())
    except (OSError, ValueError):
        pid = None
    if pid is not None and alive(pid) and _is_watchdog(pid, pgdata):
        return
    root = Path(__file__).resolve().parent.parent.parent
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    )
    subprocess.Popen(
        [sys.executable, "-m", MODULE, str(pgdata)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=root,
        env=env,
        start_new_session=True,  # not in the terminal's process group: Ctrl-C does not reach it
        close_fds=True,
    )


def _stop(pgdata: Path) -> None:
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]
    from pgserver.postgres_server import PostgresServer

    with PostgresServer._lock:
        if any(alive(pid) for pid in _handles(pgdata)) or _postmaster(pgdata) is None:
            return  # a process joined meanwhile, or someone else stopped the server
        (pgdata / ".handle_pids.json").write_text("[]")
        # As pgserver does: run as root, it runs the server as the user "pgserver".
        user = "pgserver" if os.name == "posix" and os.geteuid() == 0 else None
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)


def watch(pgdata: Path) -> None:
    (pgdata / PIDFILE).write_text(str(os.getpid()))
    idle = 0
    while _postmaster(pgdata) is not None:
        idle = 0 if any(alive(pid) for pid in _handles(pgdata)) else idle + 1
        if idle >= 2:  # two looks in a row: not a process between joining and registering
            _stop(pgdata)
            idle = 0
        time.sleep(POLL)
    try:
        if int((pgdata / PIDFILE).read_text()) == os.getpid():
            (pgdata / PIDFILE).unlink()
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    watch(Path(sys.argv[1]).resolve())
