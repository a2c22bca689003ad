"""The application waits at most one batch, even while it holds a row lock itself.

A batch that met a row the application holds used to wait out its lock
timeout with every other row of its window locked, so unrelated application
updates of those rows waited as long. Now a batch waits for a held row only
before it holds any other (and steps around one it meets later), so the
application's other updates wait at most one batch.
"""

from __future__ import annotations

import threading
import time

import pytest

from rotator.workers.sizing import TARGET_SECONDS
from tests import counting
from tests.conftest import fill
from tests.live import TABLE, TIMEOUT, Background, backend_pid, connect, keys, wait_until_blocking
from tests.support import rotate_directly

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgresql]

ROWS = 6_000
BATCH = 1_000
#: The row the application holds: the middle of the third window.
HELD = 2_500
#: How long the application keeps holding it once the rotator waits on it
#: (longer than the 2 s lock timeout: the batch rolls back and tries again).
HOLD = 2.5


def test_unrelated_updates_wait_at_most_one_batch_while_the_app_holds_a_row(counted):
    fill(ROWS)
    ids = keys()
    # Rows of the held row's window, on both sides of it.
    neighbours = ids[HELD - 400 : HELD] + ids[HELD + 1 : HELD + 400]
    held, over = threading.Event(), threading.Event()
    waits: list[float] = []

    def hold() -> bool:
        with connect() as conn, conn.transaction():
            conn.execute(f"SELECT 1 FROM {TABLE} WHERE id = %s FOR UPDATE", [ids[HELD]])
            held.set()
            blocked = wait_until_blocking(backend_pid(conn), done=over.is_set)
            time.sleep(HOLD if blocked else 0)
        return blocked

    def update_neighbours() -> None:
        with connect(lock_timeout="10s") as conn:
            i = 0
            while not over.is_set():
                started = time.monotonic()
                conn.execute(
                    f"UPDATE {TABLE} SET subject = subject WHERE id = %s",
                    [neighbours[i % len(neighbours)]],
                )
                waits.append(time.monotonic() - started)
                i += 7
                time.sleep(0.005)

    holder, app = Background(hold), Background(update_neighbours)
    holder.start()
    assert held.wait(TIMEOUT)
    app.start()
    try:
        report, out, err = rotate_directly(workers=1, shards=1, batch_size=BATCH, verbosity=2)
    finally:
        over.set()
        app.join()
        holder.join()

    assert report.finished, out + err
    assert holder.result, "the rotator never waited on the row the application held"
    assert len(waits) > 100
    worst = max(waits)
    assert worst <= TARGET_SECONDS + 0.2, f"an unrelated update waited {worst:.2f} s"
    # Every row once, the held one too (after the application let it go).
    assert counting.histogram() == {1: ROWS}
    assert "a row lock was held longer than the lock timeout; batch rolled back" in out + err, (
        out + err
    )
