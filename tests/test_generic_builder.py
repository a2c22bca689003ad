"""The portable fallback builder (the ORM's bulk_update) rotates and resumes correctly."""

from __future__ import annotations

import django
import pytest
from django.core.management import CommandError
from django.db import connection

import rotator.sql
from rotator.models import Run
from rotator.sql.generic import GenericBuilder
from tests.conftest import fill, rows, run
from tests.support import interrupted_run


@pytest.fixture
def generic(monkeypatch):
    """Pretend this database has no builder of its own: the portable fallback runs."""
    monkeypatch.delitem(rotator.sql.BUILDERS, connection.vendor)
    assert isinstance(rotator.sql.builder_for(connection), GenericBuilder)


def skip_concurrent_writers_on_old_sqlite(workers: int) -> None:
    if workers > 1 and connection.vendor == "sqlite" and django.VERSION < (5, 1):
        # Concurrent writers need BEGIN IMMEDIATE (OPTIONS["transaction_mode"], Django 5.1+);
        # the SQLite builder itself runs one worker.
        pytest.skip("concurrent writers on SQLite need Django 5.1+")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("workers", [1, 3])
def test_the_portable_fallback_rotates_correctly(generic, workers):
    skip_concurrent_writers_on_old_sqlite(workers)
    fill(500)
    before = rows()
    out, _ = run("regenerate_token_async", "--workers", str(workers), "--batch-size", "70")
    after = rows()
    assert after.keys() == before.keys()
    assert all(after[pk][0] != before[pk][0] for pk in before)
    assert len({token for token, *_ in after.values()}) == len(after)
    assert all(after[pk][1:] == before[pk][1:] for pk in before)
    assert f"with {workers} worker" in out  # the fallback claims concurrent writers
    assert Run.objects.get().state == Run.State.FINISHED


@pytest.mark.django_db(transaction=True)
def test_the_portable_fallback_resumes_exactly(generic):
    skip_concurrent_writers_on_old_sqlite(2)
    fill(1_000)
    before = rows()
    interrupted_run(workers=2, batch_size=25, committed=3)
    middle = rows()
    changed = {pk for pk in before if middle[pk][0] != before[pk][0]}
    assert len(changed) == 75
    run("regenerate_token_async", "--workers", "2")
    after = rows()
    assert {pk: after[pk] for pk in changed} == {pk: middle[pk] for pk in changed}
    assert all(after[pk][0] != before[pk][0] for pk in before)


@pytest.mark.django_db
def test_the_portable_fallback_dry_run_and_refusals(generic):
    fill(10)
    out, _ = run("regenerate_token_async", "--dry-run")
    sql = out.split("SQL of one batch:\n", 1)[1]
    assert "SELECT" in sql and "bulk_update" in sql
    assert not Run.objects.exists()
    with pytest.raises(CommandError, match=r"^--generator database is not available on generic$"):
        run("regenerate_token_async", "--generator", "database")
