"""Rotation end to end: every token changes once, nothing else does, runs resume exactly."""

from __future__ import annotations

import re

import pytest
from django.core.management import CommandError

from rotator.models import Run, Shard
from rotator.workers.sizing import FIRST_BATCH, MAX_BATCH, MIN_BATCH, BatchSizer
from tests.conftest import fill, rows, run, vendor
from tests.support import interrupted_run, record_batches, rotate_directly, tokens
from tickets.models import Ticket

pytestmark = pytest.mark.django_db(transaction=True)

SUMMARY = re.compile(
    r"^Rotated (?P<rows>[\d,]+) rows of tickets\.Ticket\.token in \d+:\d\d "
    r"\([\d,]+ rows/s\) with (?P<workers>\d+) workers?; run (?P<run>\d+) finished\.$",
    re.M,
)


def assert_rotated(before: dict[int, tuple], after: dict[int, tuple]) -> None:
    """Every token new and unique; ids, subjects and timestamps untouched."""
    assert after.keys() == before.keys()
    assert [pk for pk in before if after[pk][0] == before[pk][0]] == []
    assert len({token for token, *_ in after.values()}) == len(after)
    assert not {token for token, *_ in after.values()} & {t for t, *_ in before.values()}
    assert {pk: rest for pk, (_, *rest) in after.items()} == {
        pk: rest for pk, (_, *rest) in before.items()
    }


@pytest.mark.parametrize("workers", [1, 8])
@pytest.mark.parametrize("batch_size", [None, 97], ids=["adaptive", "fixed"])
def test_every_token_changes_and_nothing_else(workers, batch_size):
    fill(3_000)
    before = rows()
    args = ["--workers", str(workers)]
    if batch_size:
        args += ["--batch-size", str(batch_size)]
    out, err = run("regenerate_token_async", *args)
    assert_rotated(before, rows())
    summary = SUMMARY.search(out)
    assert summary, out
    assert summary["rows"] == "3,000"
    assert Run.objects.get().state == Run.State.FINISHED
    assert Shard.objects.filter(state=Shard.State.DONE).count() == workers * 4


@pytest.mark.parametrize(("workers", "shards"), [(8, 2), (2, 16)])
def test_workers_and_shards_need_not_match(workers, shards):
    fill(1_000)
    before = rows()
    out, err = run("regenerate_token_async", "--workers", str(workers), "--shards", str(shards))
    assert_rotated(before, rows())
    assert f"1,000 rows of tickets.Ticket.token in {shards} shards" in out
    assert Shard.objects.filter(state=Shard.State.DONE, rows_done__gt=0).count() == shards


def test_fixed_batch_size_is_kept_to_the_row():
    fill(1_000)
    sizes: list[tuple[int, int]] = []
    rotate_directly(workers=2, shards=4, batch_size=60, batch_hook=record_batches(sizes))
    # 250 rows a shard: four batches of 60, then the last 10.
    for shard in range(4):
        assert [n for index, n in sizes if index == shard] == [60, 60, 60, 60, 10]


def test_adaptive_batch_size_starts_small_then_grows():
    fill(12_000)
    before = rows()
    sizes: list[tuple[int, int]] = []
    rotate_directly(workers=1, shards=1, batch_hook=record_batches(sizes))
    assert_rotated(before, rows())
    assert sizes[0] == (0, FIRST_BATCH)
    assert sum(n for _, n in sizes) == 12_000
    assert max(n for _, n in sizes) > FIRST_BATCH


def test_batch_seconds_reach_the_workers_sizer(monkeypatch):
    targets = []
    real = BatchSizer.__post_init__

    def seen(self):
        targets.append(self.target)
        real(self)

    monkeypatch.setattr(BatchSizer, "__post_init__", seen)
    fill(50)
    run("regenerate_token_async", "--workers", "2", "--batch-seconds", "0.05")
    assert targets and set(targets) == {0.05}


def test_batch_sizer_steers_toward_its_target_within_bounds():
    sizer = BatchSizer()
    assert sizer.size == FIRST_BATCH
    sizer.record(FIRST_BATCH, 0.001)  # far too fast: at most doubles
    assert sizer.size == 2 * FIRST_BATCH
    sizer.record(2 * FIRST_BATCH, 100.0)  # far too slow: at most halves
    assert sizer.size == FIRST_BATCH
    sizer.record(FIRST_BATCH, 1.0)  # 1,000 rows/s aims at 100 rows: at most halves
    assert sizer.size == 500
    sizer.record(100, 0.001)  # a short (last) batch says nothing about speed
    assert sizer.size == 500
    for _ in range(20):
        sizer.record(sizer.size, 100.0)
    assert sizer.size == MIN_BATCH
    for _ in range(20):
        sizer.record(sizer.size, 0.0001)
    assert sizer.size == MAX_BATCH

    fixed = BatchSizer(fixed=7)
    fixed.record(7, 0.0001)
    assert fixed.size == 7


def test_rotate_field_is_the_same_rotation_as_the_dedicated_command():
    fill(500)
    before = rows()
    out_generic, _ = run("rotate_field", "tickets.Ticket.token", "--workers", "1")
    middle = rows()
    assert_rotated(before, middle)

    # The same target, hence the same run history: the finished run is theirs too.
    with pytest.raises(CommandError, match=r"was fully rotated by run \d+"):
        run("regenerate_token_async")
    out_dedicated, _ = run("regenerate_token_async", "--workers", "1", "--restart")
    assert_rotated(middle, rows())

    def shape(out: str) -> str:
        return re.sub(r"\d+(?:[,:.]\d+)*", "N", out)

    assert shape(out_generic) == shape(out_dedicated)
    assert shape(out_generic).splitlines() == [
        "Planning a run of tickets.Ticket.token in N shards ...",
        "Planned run N: N rows of tickets.Ticket.token in N shards (keys up to N).",
        "Verified: no planned row of tickets.Ticket.token holds its pre-rotation value "
        "(no row was written back by the application).",
        "Rotated N rows of tickets.Ticket.token in N (N rows/s) with N worker; run N finished.",
    ]


def test_a_finished_run_is_not_repeated():
    fill(200)
    run("regenerate_token_async", "--workers", "2")
    finished = Run.objects.get()
    after_first = rows()

    with pytest.raises(CommandError) as refused:
        run("regenerate_token_async", "--workers", "2")
    when = finished.finished_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert str(refused.value) == (
        f"tickets.Ticket.token was fully rotated by run {finished.pk} (finished {when}); "
        "pass --restart to rotate every row again"
    )
    assert refused.value.returncode != 0
    assert rows() == after_first
    assert Run.objects.count() == 1


def test_restart_after_a_finished_run_rotates_every_row_again():
    fill(200)
    run("regenerate_token_async")
    after_first = rows()
    out, _ = run("regenerate_token_async", "--restart")
    assert_rotated(after_first, rows())
    assert Run.objects.filter(state=Run.State.FINISHED).count() == 2


def test_restart_abandons_an_unfinished_run_and_plans_a_new_one():
    fill(1_000)
    before = rows()
    old = interrupted_run(workers=2, batch_size=25, committed=2)
    assert old.rows_done() == 50

    out, _ = run("regenerate_token_async", "--restart", "--yes", "--workers", "3")
    lines = out.splitlines()
    assert lines[0] == f"Abandoned run {old.pk} of tickets.Ticket.token; planning a new one."
    new = Run.objects.get(state=Run.State.FINISHED)
    assert lines[1] == "Planning a run of tickets.Ticket.token in 12 shards ..."
    assert lines[2].startswith(f"Planned run {new.pk}: 1,000 rows")
    assert new.pk != old.pk
    assert Run.objects.get(pk=old.pk).state == Run.State.ABANDONED
    assert new.shards.count() == 12  # planned anew for 3 workers, not the old 8 shards
    assert_rotated(before, rows())


def test_resume_rotates_each_remaining_row_once_with_other_workers():
    fill(1_000)
    before = tokens()
    stopped = interrupted_run(workers=2, batch_size=25, committed=2)
    middle = tokens()
    rotated_first = {pk for pk in before if middle[pk] != before[pk]}
    assert len(rotated_first) == stopped.rows_done() == 50

    out, _ = run("regenerate_token_async", "--workers", "5")
    assert out.splitlines()[0] == (
        f"Resuming run {stopped.pk} of tickets.Ticket.token: 50/1,000 rows already rotated."
    )
    summary = SUMMARY.search(out)
    assert summary and summary["rows"] == "950" and summary["run"] == str(stopped.pk)
    if vendor() == "sqlite":
        assert out.splitlines()[1] == (
            "SQLite has a single writer: running the 5 workers' shards one at a time."
        )
        assert summary["workers"] == "1"
    else:
        assert summary["workers"] == "5"
    after = tokens()
    # Rows of committed batches kept their first new token; all others changed once.
    assert {pk: after[pk] for pk in rotated_first} == {pk: middle[pk] for pk in rotated_first}
    assert all(after[pk] != before[pk] for pk in before)
    assert len(set(after.values())) == len(after)
    assert Run.objects.get().state == Run.State.FINISHED


def test_rows_inserted_after_planning_keep_their_token():
    fill(300)
    before = rows()
    stopped = interrupted_run(workers=1, batch_size=25, committed=1)
    assert stopped.high_water == str(max(before))
    late = Ticket.objects.bulk_create(Ticket(subject="late") for _ in range(5))
    late_tokens = {t.pk: t.token for t in late}
    assert min(late_tokens) > max(before)

    run("regenerate_token_async", "--workers", "2")
    after = rows()
    assert {pk: after[pk][0] for pk in late_tokens} == late_tokens
    assert_rotated(before, {pk: v for pk, v in after.items() if pk not in late_tokens})


def test_shards_differing_from_the_stored_plan_are_refused():
    fill(400)
    stopped = interrupted_run(workers=2, batch_size=25, committed=2)
    middle = tokens()
    with pytest.raises(CommandError) as refused:
        run("regenerate_token_async", "--shards", "3")
    assert str(refused.value) == (
        f"--shards 3 does not match run {stopped.pk}, planned with 8 shards; "
        "resume without --shards, or pass --restart to plan again"
    )
    assert tokens() == middle
    assert Run.objects.get().rows_done() == 50

    # The planned number itself is accepted.
    run("regenerate_token_async", "--shards", "8")
    assert Run.objects.get().state == Run.State.FINISHED


def test_an_empty_table_has_nothing_to_rotate_and_leaves_no_run():
    out, err = run("regenerate_token_async", "--workers", "1")
    assert out.splitlines() == [
        "Planning a run of tickets.Ticket.token in 4 shards ...",
        "Nothing to rotate: tickets.Ticket has no rows.",
    ]
    assert not Run.objects.exists()
    fill(10)  # rows arrive later: a plain run rotates them, no --restart needed
    run("regenerate_token_async", "--workers", "1")
    assert Run.objects.get().state == Run.State.FINISHED
