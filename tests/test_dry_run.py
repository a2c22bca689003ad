"""--dry-run prints the plan and the SQL of one batch, and changes nothing."""

from __future__ import annotations

import re

import pytest

from rotator.models import Run, Shard
from tests.conftest import fill, rows, run, vendor
from tests.support import interrupted_run

pytestmark = pytest.mark.django_db(transaction=True)


def test_dry_run_prints_the_plan_and_changes_nothing():
    fill(1_000)
    before = rows()
    out, err = run("regenerate_token_async", "--dry-run", "--workers", "2", "--batch-size", "100")
    lines = out.splitlines()
    assert lines[:5] == [
        "Dry run: nothing will be changed.",
        f"Target: tickets.Ticket.token on database 'default' ({vendor()})",
        "Generator: uuid.uuid4 (uuid4 from os.urandom, generated in bulk)",
        "Batch size: 100 rows",
        "Workers: 2",
    ]
    first, last = min(before), max(before)
    assert lines[5] == f"Would plan a new run: 1,000 rows, keys up to {last}"
    assert lines[6] == "Shards: 8"
    shard_lines = lines[7:15]
    assert shard_lines[0] == f"  shard 0: keys (start, {first + 124}], 125 rows, pending"
    assert shard_lines[-1] == f"  shard 7: keys ({first + 874}, {last}], 125 rows, pending"
    assert all(
        re.fullmatch(rf"  shard {i}: keys \((start|\d+), \d+\], 125 rows, pending", line)
        for i, line in enumerate(shard_lines)
    )
    assert lines[15] == "SQL of one batch:"
    sql = "\n".join(lines[16:])
    assert "UPDATE" in sql and "tickets_ticket" in sql
    assert err == ""

    assert not Run.objects.exists()
    assert not Shard.objects.exists()
    assert rows() == before


def test_dry_run_shows_the_adaptive_batch_size():
    fill(10)
    out, _ = run("regenerate_token_async", "--dry-run")
    assert (
        "Batch size: adaptive, 100 to 50,000 rows (starts at 1,000, aims at 0.1 s per batch)"
        in out.splitlines()
    )


def test_dry_run_shows_what_the_batch_size_aims_at():
    fill(10)
    out, _ = run("regenerate_token_async", "--dry-run", "--batch-seconds", "0.05")
    assert (
        "Batch size: adaptive, 100 to 50,000 rows (starts at 1,000, aims at 0.05 s per batch)"
        in out.splitlines()
    )


def test_dry_run_of_an_unfinished_run_shows_its_checkpoints():
    fill(1_000)
    stopped = interrupted_run(workers=1, batch_size=25, committed=2)
    before = rows()
    out, _ = run("regenerate_token_async", "--dry-run")
    assert re.search(
        rf"^Would resume run {stopped.pk} \(planned .+\): 50/1,000 rows done, keys up to \d+$",
        out,
        re.M,
    )
    assert re.search(r"^  shard 0: keys \(start, \d+\], 250 rows, pending, 50 done$", out, re.M)
    assert rows() == before
    assert Run.objects.get().state == Run.State.ACTIVE
    assert Run.objects.get().rows_done() == 50


def test_dry_run_with_restart_does_not_abandon_the_run():
    fill(1_000)
    stopped = interrupted_run(workers=1, batch_size=25, committed=2)
    out, _ = run("regenerate_token_async", "--dry-run", "--restart")
    assert "Would plan a new run: 1,000 rows" in out
    assert "Abandoned" not in out
    assert list(Run.objects.values_list("pk", "state")) == [(stopped.pk, Run.State.ACTIVE)]


def test_dry_run_of_an_empty_table():
    out, _ = run("regenerate_token_async", "--dry-run")
    assert "Would plan a new run: 0 rows, keys up to None" in out.splitlines()
    assert "Shards: 0" in out.splitlines()
    assert not Run.objects.exists()


@pytest.mark.postgresql
def test_dry_run_sql_is_the_statement_a_batch_runs():
    fill(10)
    out, _ = run("regenerate_token_async", "--dry-run", "--generator", "database")
    sql = out.split("SQL of one batch:\n", 1)[1]
    assert "gen_random_uuid()" in sql
    assert "%(lo)s" in sql and "%(hi)s" in sql and "%(limit)s" in sql
    assert not Run.objects.exists()
