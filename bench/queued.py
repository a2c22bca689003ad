"""The rotation on Celery beside the command, on one PostgreSQL server: rows/s and WAL.

    python bench/queued.py --rows 1000000 --workers 1,2,4

For each worker count: a fresh, seeded, vacuumed and checkpointed table; then
``regenerate_token_async --workers N`` in one process, and
``regenerate_token_async --enqueue --wait --workers N`` worked by celery
workers (one node, N pool processes) on Redis. Prints wall time, rows/s and
the WAL written (pg_current_wal_lsn before and after). Its own database
(``rotator_tasks_bench`` on the server of --database-url) is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
NAME = "rotator_tasks_bench"


def server_url(url: str, db: str) -> str:
    return url.rsplit("/", 1)[0] + f"/{db}"


def sql(url: str, statement: str) -> tuple | None:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement)
        return cur.fetchone() if cur.description else None


def manage(env: dict[str, str], *args: str) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-W", "ignore", str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.monotonic() - started


def fresh_table(url: str, env: dict[str, str], rows: int) -> None:
    proof = "rotator_fingerprint, rotator_fingerprintset"
    sql(url, f"TRUNCATE tickets_ticket, {proof}, rotator_shard, rotator_run")
    manage(env, "seed_tickets", "--count", str(rows))
    sql(url, "VACUUM ANALYZE tickets_ticket")
    sql(url, "CHECKPOINT")


def measured(url: str, env: dict[str, str], *args: str) -> tuple[float, int]:
    before = sql(url, "SELECT pg_current_wal_lsn()")
    seconds = manage(env, "regenerate_token_async", "--progress", "none", *args)
    after = sql(url, "SELECT pg_current_wal_lsn()")
    assert before and after
    wal = sql(url, f"SELECT pg_wal_lsn_diff('{after[0]}', '{before[0]}')")
    assert wal
    return seconds, int(wal[0])


def celery_node(env: dict[str, str], concurrency: int) -> subprocess.Popen:
    argv = [sys.executable, "-m", "celery", "-A", "asyncproj", "worker", "-l", "warning"]
    argv += ["--concurrency", str(concurrency), "-Q", env["CELERY_TASK_DEFAULT_QUEUE"]]
    argv += ["--without-mingle", "--without-gossip"]
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, start_new_session=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/5")
    args = parser.parse_args()
    admin, url = args.database_url, server_url(args.database_url, NAME)
    sql(admin, f"DROP DATABASE IF EXISTS {NAME}")
    sql(admin, f"CREATE DATABASE {NAME}")
    queue = f"rotator_tasks_bench_{uuid.uuid4().hex[:8]}"
    env = dict(
        os.environ,
        DATABASE_URL=url,
        CELERY_BROKER_URL=args.broker,
        CELERY_TASK_DEFAULT_QUEUE=queue,
        C_FORCE_ROOT="1",
    )
    try:
        manage(env, "migrate", "-v", "0")
        print("| how | workers | wall | rows/s | WAL | WAL/s |\n|---|---|---|---|---|---|")
        for workers in [int(n) for n in args.workers.split(",")]:
            for how in ("command", "celery"):
                fresh_table(url, env, args.rows)
                flags = ["--workers", str(workers)]
                node = celery_node(env, workers) if how == "celery" else None
                try:
                    if node is not None:
                        time.sleep(3)  # the node connects and its pool starts
                        flags += ["--enqueue", "--wait"]
                    seconds, wal = measured(url, env, *flags)
                finally:
                    if node is not None:
                        os.killpg(node.pid, signal.SIGTERM)
                        node.wait(30)
                mib = wal / 2**20
                print(
                    f"| {how} | {workers} | {seconds:.1f} s | {args.rows / seconds:,.0f} | "
                    f"{mib:,.0f} MiB | {mib / seconds:,.1f} MiB/s |",
                    flush=True,
                )
    finally:
        sql(admin, f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)")
        from kombu import Connection

        with Connection(args.broker) as conn:
            conn.channel().queue_delete(queue)


if __name__ == "__main__":
    main()
