"""Start (or join) the embedded PostgreSQL server and leave no orphan behind.

pgserver counts the processes using a data directory in a file and stops the
server when the last of them exits. A process killed with SIGKILL never takes
itself off that list, which would keep the server alive forever; so before
joining we drop the pids of processes that no longer exist, and a detached
watchdog (``watchdog.py``) stops the server when all its users are gone.
"""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path

from . import watchdog
from .processes import alive

_lock = threading.Lock()
_socket_dirs: dict[Path, str] = {}


def _prune_dead_handles(pgdata: Path) -> None:
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    pids = json.loads(handles.read_text() or "[]")
    live = [pid for pid in pids if alive(pid)]
    if live != pids:
        handles.write_text(json.dumps(live))


def socket_dir(pgdata: str | Path) -> str:
    """Return the socket directory of the server for ``pgdata``, starting it if needed."""
    path = Path(pgdata).expanduser().resolve()
    with _lock:
        if path not in _socket_dirs:
            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset; its fallback is fine.
                warnings.simplefilter("ignore")
                import pgserver
                from pgserver.postgres_server import PostgresServer

            path.mkdir(parents=True, exist_ok=True)
            with PostgresServer._lock:
                _prune_dead_handles(path)
            server = pgserver.get_server(path, cleanup_mode="stop")
            with PostgresServer._lock:
                watchdog.ensure_running(path)
            info = server.get_postmaster_info()
            if info.socket_dir is None:
                raise AssertionError("unreachable: pgserver listens on a socket on POSIX")
            _socket_dirs[path] = str(info.socket_dir)
        return _socket_dirs[path]
