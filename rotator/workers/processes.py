"""Is a process on this host still alive?"""

from __future__ import annotations

import psutil


def pid_alive(pid: int) -> bool:
    # psutil, not os.kill(pid, 0): on Windows that call terminates the process.
    if not psutil.pid_exists(pid):
        return False
    try:
        # A killed process nobody has reaped yet (a zombie) still exists.
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
