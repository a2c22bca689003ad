"""On MariaDB/MySQL, shard ownership is a GET_LOCK() named lock that dies with its session,
and lock waits are told apart by error number."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.db import OperationalError, connection, transaction

from rotator.faults import Kind
from rotator.sql.mysql import MySQLBuilder
from tests.conftest import fill
from tickets.models import Ticket

pytestmark = [pytest.mark.mysql, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def other() -> Iterator:
    """A second session on the same database."""
    second = connection.copy()
    second.ensure_connection()
    try:
        yield second
    finally:
        second.close()


def test_a_shard_lock_is_held_by_one_session_and_dies_with_it(other):
    builder = MySQLBuilder()
    connection.ensure_connection()  # builders work on open connections (the engine's)
    try:
        assert builder.try_own(connection, 41)
        assert not builder.try_own(other, 41)
        assert builder.owner_alive(other, 41) is True
        builder.disown(connection, 41)
        assert builder.owner_alive(other, 41) is False
        assert builder.try_own(other, 41)
        other.close()  # as a killed worker's session would end
        # The server ends the session (and frees its locks) after the client has gone.
        deadline = time.monotonic() + 10
        while builder.owner_alive(connection, 41) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert builder.owner_alive(connection, 41) is False
        assert builder.try_own(connection, 41)
    finally:
        builder.disown_all(connection)
    assert builder.owner_alive(connection, 41) is False


def test_a_row_lock_held_too_long_is_a_lock_fault(other):
    fill(1)
    ticket = Ticket.objects.get()
    builder = MySQLBuilder()
    builder.guard_transaction(other, lock_timeout=1, idle_timeout=30)
    with transaction.atomic():
        Ticket.objects.filter(pk=ticket.pk).update(subject="held")
        with pytest.raises(OperationalError) as caught, other.cursor() as cursor:
            cursor.execute(
                "UPDATE tickets_ticket SET subject = 'waiting' WHERE id = %s", [ticket.pk]
            )
    fault = builder.fault(caught.value)
    assert fault is not None and fault.kind is Kind.LOCK
    assert builder.fault(OperationalError("no server error number")) is None
