"""Child process: run one workload on the bench database and report its costs.

Usage (by run.py only): ``python -m bench.child JOB_JSON``. The result (wall
time of the work alone, peak RSS, WAL bytes) goes to the file named in the job.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

from .bootstrap import setup


def peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _lsn() -> str:
    from django.db import connections

    if connections["default"].vendor != "postgresql":
        return ""  # WAL is measured on PostgreSQL only
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()::text")
        return cursor.fetchone()[0]


def _wal_between(start: str, end: str) -> int:
    from django.db import connections

    if not start:
        return 0
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)::bigint", [end, start])
        return cursor.fetchone()[0]


def measure(job: dict[str, Any]) -> dict[str, Any]:
    from .workloads import WORKLOADS

    work = WORKLOADS[job["workload"]]
    start_lsn = _lsn()
    rss_before = peak_rss()
    started = time.perf_counter()
    rows, detail = work(job)
    seconds = time.perf_counter() - started
    rss_peak = peak_rss()
    return {
        "rows": rows,
        "seconds": seconds,
        "rss_before": rss_before,
        "rss_peak": rss_peak,
        "wal_bytes": _wal_between(start_lsn, _lsn()),
        "detail": detail,
    }


def main(argv: list[str]) -> None:
    job = json.loads(argv[1])
    setup(job["db"])
    result = measure(job)
    with open(job["result"], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv)
