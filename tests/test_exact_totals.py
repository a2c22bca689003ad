"""A finished run shows exact numbers that add up, and planning outlasts a busy writer."""

from __future__ import annotations

import sqlite3

import pytest
from django.db import OperationalError, connection

from rotator.models import Run
from rotator.sql import postgresql
from rotator.store import lifecycle
from tests.conftest import fill
from tests.support import rotate_directly

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.postgresql
def test_an_estimated_plan_ends_with_the_exact_count(monkeypatch):
    fill(3_000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tickets_ticket")
    fill(500)  # the statistics now say 3,000 rows: the plan's total is an estimate
    monkeypatch.setattr(postgresql, "EXACT_PLAN_ROWS", 1_000)  # plan from the statistics
    monkeypatch.setattr(postgresql, "SAMPLE_ROWS", 500)
    report, out, _ = rotate_directly(workers=2, verbosity=1)
    run = Run.objects.get()
    assert run.state == Run.State.FINISHED
    assert run.total_rows == 3_500 and not run.options["estimated"]
    assert report.total_rows == 3_500 and not report.estimated
    assert "about" not in out.splitlines()[-1]


@pytest.mark.sqlite
def test_planning_is_tried_again_while_sqlite_is_locked(monkeypatch):
    fill(100)
    real, calls = lifecycle._plan, []

    def locked_twice(*args, **kwargs):
        calls.append(1)
        if len(calls) <= 2:
            busy = sqlite3.OperationalError("database is locked")
            busy.sqlite_errorcode = sqlite3.SQLITE_BUSY
            error = OperationalError("database is locked")
            error.__cause__ = busy
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "_plan", locked_twice)
    report, _, _ = rotate_directly(workers=1, verbosity=0)
    assert report.finished and len(calls) == 3
