"""Real ``celery worker`` processes on a real broker, for the task-queue tests.

Each test gets a queue of its own (``rotator_tasks_<hex>``) on Redis db 5 or on
RabbitMQ's default vhost, workers that consume only that queue, and the queue
deleted afterwards (only that one). Workers run the demo project's Celery app
(``celery -A asyncproj worker``) against the test database, as manage.py does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.conftest import ROOT, manage, subprocess_env

BROKERS = {
    "redis": os.environ.get("ROTATOR_TEST_REDIS", "redis://127.0.0.1:6379/5"),
    "rabbitmq": os.environ.get("ROTATOR_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//"),
}
TIMEOUT = 120.0


def slow_uuid() -> uuid.UUID:
    """A token that takes a fifth of a millisecond: a 200k-row run lasts long enough
    to kill a worker in the middle of it."""
    time.sleep(0.0002)
    return uuid.uuid4()


def reachable(url: str) -> str | None:
    """None if the broker answers, else why not."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@dataclass
class Fleet:
    """Worker processes (each a prefork pool of ``concurrency`` children) on one queue."""

    broker: str
    logs: Path
    queue: str = field(default_factory=lambda: f"rotator_tasks_{uuid.uuid4().hex[:12]}")
    nodes: list[subprocess.Popen] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return dict(
            subprocess_env(),
            CELERY_BROKER_URL=self.broker,
            CELERY_TASK_DEFAULT_QUEUE=self.queue,
            C_FORCE_ROOT="1",
        )

    def start(self, count: int, concurrency: int = 2) -> None:
        for n in range(len(self.nodes), len(self.nodes) + count):
            log = (self.logs / f"worker{n}.log").open("w")
            argv = [sys.executable, "-m", "celery", "-A", "asyncproj", "worker"]
            argv += ["--pool", "prefork", "--concurrency", str(concurrency), "-Q", self.queue]
            argv += ["-n", f"{self.queue}-{n}@%h", "--without-mingle", "--without-gossip"]
            argv += ["-l", "info"]
            self.nodes.append(
                subprocess.Popen(
                    argv,
                    cwd=ROOT,
                    env=self.env(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + TIMEOUT
        while self.log().count(" ready.") < len(self.nodes):
            assert time.monotonic() < deadline, f"workers did not start:\n{self.log()}"
            time.sleep(0.2)

    def children(self) -> set[int]:
        """Pids of the pool processes, which run the tasks."""
        pids: set[int] = set()
        for node in self.nodes:
            with contextlib.suppress(psutil.NoSuchProcess):
                pids.update(child.pid for child in psutil.Process(node.pid).children())
        return pids

    def log(self) -> str:
        return "\n".join(path.read_text() for path in sorted(self.logs.glob("worker*.log")))

    def manage(self, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        return subprocess.run(
            manage(*args),
            cwd=ROOT,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen(self, *args: str, out: Path, err: Path) -> subprocess.Popen:
        with out.open("w") as o, err.open("w") as e:
            return subprocess.Popen(
                manage(*args),
                cwd=ROOT,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=o,
                stderr=e,
            )

    def stop(self) -> None:
        """Stop every worker this fleet started (their own process groups), then drop the
        queue."""
        for node in self.nodes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGTERM)
        for node in self.nodes:
            try:
                node.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.pid, signal.SIGKILL)
                node.wait(15)
        self.purge()

    def purge(self) -> None:
        from kombu import Connection

        with Connection(self.broker, connect_timeout=3) as conn:
            channel = conn.channel()
            with contextlib.suppress(Exception):
                channel.queue_delete(self.queue)
            if self.broker.startswith("redis"):
                client = channel.client
                # db 5 is this suite's own: the unacked bookkeeping and this queue's bindings.
                client.delete("unacked", "unacked_index")
                client.delete(f"_kombu.binding.{self.queue}")
                client.delete(f"_kombu.binding_permanent.{self.queue}")


@contextlib.contextmanager
def fleet(broker: str, logs: Path) -> Iterator[Fleet]:
    running = Fleet(broker, logs)
    try:
        yield running
    finally:
        running.stop()
