"""No token, old or new, reaches the PostgreSQL server log, whatever the log settings.

The test database gets ``log_min_duration_statement = 0`` (every statement is
logged, with its bind parameters), a rotation runs, and then the log written
since is searched for every token the table held before and after, in the
dashed form and as bare hex (how a bytea of packed UUIDs would show). A
unique violation would log its DETAIL, ``Key (token)=(...) already exists``,
with a live value in it: colliding values are forced too.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from tests.conftest import fill
from tests.environment import need
from tests.live import TABLE, connect
from tests.support import rotate_directly, tokens
from tickets.models import Ticket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgresql]


def _log_file() -> Path | None:
    with connect() as conn:
        (data,) = conn.execute("SHOW data_directory").fetchone()
        (current,) = conn.execute("SELECT pg_current_logfile()").fetchone()
    if current:  # logging_collector = on
        return Path(data) / current
    embedded = Path(data) / "log"  # pgserver starts the embedded server with pg_ctl -l <data>/log
    return embedded if embedded.is_file() else None


def _fresh_sessions() -> None:
    """ALTER DATABASE ... SET applies to new sessions: drop the pooled ones."""
    connection.close()
    if hasattr(connection, "close_pool"):
        connection.close_pool()


@pytest.fixture
def server_log() -> Iterator[Callable[[], str]]:
    """Log every statement of the test database; yield a reader of the log written since."""
    path = _log_file()
    if path is None or not path.is_file():
        need(
            "server-log",
            "the server log is not a file this test can find (logging_collector is off)",
        )
    try:
        size = path.stat().st_size
        path.open("rb").close()
    except OSError as exc:
        need("server-log", f"the server log {str(path)!r} is not readable: {exc}")
    name = connection.settings_dict["NAME"]
    qn = connection.ops.quote_name
    with connect() as conn:
        try:
            conn.execute(f"ALTER DATABASE {qn(name)} SET log_min_duration_statement = 0")
        except psycopg.errors.InsufficientPrivilege as exc:
            need(
                "server-log",
                f"ALTER DATABASE ... SET log_min_duration_statement needs a superuser: {exc}",
            )
    _fresh_sessions()
    try:
        yield lambda: path.read_bytes()[size:].decode("utf-8", "replace").lower()
    finally:
        with connect() as conn:
            conn.execute(f"ALTER DATABASE {qn(name)} RESET log_min_duration_statement")
        _fresh_sessions()


def leaked(log: str, values: set[uuid.UUID]) -> int:
    return sum(1 for v in values if str(v) in log or v.hex in log)


def assert_statements_were_logged(log: str) -> None:
    # Otherwise "nothing leaked" would prove nothing.
    assert "duration:" in log and TABLE in log, "the rotation's statements were not logged"


def test_no_token_reaches_the_server_log_with_every_statement_logged(server_log):
    fill(3_000)
    before = set(tokens().values())
    report, out, err = rotate_directly(workers=2, batch_size=500, verbosity=0)
    after = set(tokens().values())
    assert report.finished
    assert not before & after

    log = server_log()
    assert_statements_were_logged(log)
    # Counts only: a failing test must not print the tokens either.
    new, old = leaked(log, after), leaked(log, before)
    assert new == 0, f"{new:,} of {len(after):,} new tokens are in the server log"
    assert old == 0, f"{old:,} of {len(before):,} old tokens are in the server log"


_lock = threading.Lock()
_existing: list[uuid.UUID] = []


def existing_first() -> uuid.UUID:
    """Generator: the table's current tokens first (each collides), then fresh uuid4s."""
    with _lock:
        if _existing:
            return _existing.pop()
    return uuid.uuid4()


def test_a_collision_does_not_put_a_live_token_in_the_server_log(server_log):
    fill(1_000)
    before = set(tokens().values())
    last = list(Ticket.objects.order_by("-pk").values_list("token", flat=True)[:3])
    _existing[:] = last
    try:
        report, out, err = rotate_directly(
            workers=1,
            batch_size=100,
            generator="tests.test_server_log.existing_first",
            verbosity=0,
        )
    finally:
        _existing.clear()
    after = set(tokens().values())
    assert report.finished
    assert not before & after

    log = server_log()
    assert_statements_were_logged(log)
    colliding, any_token = leaked(log, set(last)), leaked(log, before | after)
    assert colliding == 0, f"{colliding} of the {len(last)} colliding (live) tokens were logged"
    assert any_token == 0, f"{any_token:,} tokens are in the server log"
