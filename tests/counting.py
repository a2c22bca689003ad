"""A test-only counter of rotations per row, kept by the database itself.

``install()`` adds ``tickets_ticket.rotations`` and a trigger that adds one
to it whenever a row's token changes, whoever changes it: the test process
or a ``manage.py`` child that is later killed. A batch that rolls back takes
its increments with it, so after any crash ``rotations`` says exactly which
rows were committed as rotated, and how many times.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection

from rotator.models import Run

TABLE = "tickets_ticket"
COLUMN = "rotations"
TRIGGER = "test_count_rotations"

_INSTALL = {
    "postgresql": [
        f"ALTER TABLE {TABLE} ADD COLUMN {COLUMN} integer NOT NULL DEFAULT 0",
        f"""CREATE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.token IS DISTINCT FROM OLD.token THEN
                NEW.{COLUMN} := OLD.{COLUMN} + 1;
            END IF;
            RETURN NEW;
        END $$""",
        f"""CREATE TRIGGER {TRIGGER} BEFORE UPDATE ON {TABLE}
        FOR EACH ROW EXECUTE FUNCTION {TRIGGER}()""",
    ],
    # The trigger's own UPDATE does not touch token, and recursive triggers
    # are off by default, so it cannot fire itself.
    "sqlite": [
        f"ALTER TABLE {TABLE} ADD COLUMN {COLUMN} integer NOT NULL DEFAULT 0",
        f"""CREATE TRIGGER {TRIGGER} AFTER UPDATE OF token ON {TABLE}
        FOR EACH ROW WHEN NEW.token IS NOT OLD.token
        BEGIN
            UPDATE {TABLE} SET {COLUMN} = {COLUMN} + 1 WHERE id = NEW.id;
        END""",
    ],
    # <=> is MySQL's null-safe equality (IS NOT DISTINCT FROM).
    "mysql": [
        f"ALTER TABLE {TABLE} ADD COLUMN {COLUMN} integer NOT NULL DEFAULT 0",
        f"""CREATE TRIGGER {TRIGGER} BEFORE UPDATE ON {TABLE}
        FOR EACH ROW BEGIN
            IF NOT (NEW.token <=> OLD.token) THEN
                SET NEW.{COLUMN} = OLD.{COLUMN} + 1;
            END IF;
        END""",
    ],
}

_UNINSTALL = {
    "postgresql": [
        f"DROP TRIGGER IF EXISTS {TRIGGER} ON {TABLE}",
        f"DROP FUNCTION IF EXISTS {TRIGGER}()",
        f"ALTER TABLE {TABLE} DROP COLUMN IF EXISTS {COLUMN}",
    ],
    "sqlite": [
        f"DROP TRIGGER IF EXISTS {TRIGGER}",
        f"ALTER TABLE {TABLE} DROP COLUMN {COLUMN}",
    ],
    "mysql": [
        f"DROP TRIGGER IF EXISTS {TRIGGER}",
        f"ALTER TABLE {TABLE} DROP COLUMN IF EXISTS {COLUMN}",
    ],
}


def install() -> None:
    with connection.cursor() as cursor:
        for sql in _INSTALL[connection.vendor]:
            cursor.execute(sql)


def uninstall() -> None:
    with connection.cursor() as cursor:
        for sql in _UNINSTALL[connection.vendor]:
            cursor.execute(sql)


def _one(sql: str, params: list[object] | None = None) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone()


def histogram() -> dict[int, int]:
    """How many rows were rotated 0, 1, 2... times."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {COLUMN}, count(*) FROM {TABLE} GROUP BY {COLUMN}")
        return dict(cursor.fetchall())


def rotated() -> int:
    """Rows whose token has changed at least once (committed)."""
    return _one(f"SELECT count(*) FROM {TABLE} WHERE {COLUMN} > 0")[0]


@dataclass(frozen=True)
class Tally:
    """The counter beside the checkpoints of a run."""

    rotated: int  # rows rotated at least once
    twice: int  # rows rotated more than once
    rows_done: int  # sum of the shards' rows_done
    misplaced: int  # rows whose count disagrees with their shard's cursor
    running: int  # shards still marked running
    finished: bool  # the run's state

    @property
    def exact(self) -> bool:
        """Checkpoints say exactly which rows were rotated, each once."""
        return self.twice == 0 and self.misplaced == 0 and self.rotated == self.rows_done


def tally() -> Tally:
    """Compare the counter with every shard of the one run: rows up to a
    shard's cursor must have been rotated once, rows after it never."""
    run = Run.objects.get()
    misplaced = rows_done = running = 0
    for shard in run.shards.all():
        lower = -1 if shard.lower is None else int(shard.lower)
        cursor = lower if shard.cursor is None else int(shard.cursor)
        misplaced += _one(
            f"SELECT count(*) FROM {TABLE} WHERE id > %s AND id <= %s "
            f"AND {COLUMN} <> CASE WHEN id <= %s THEN 1 ELSE 0 END",
            [lower, int(shard.upper), cursor],
        )[0]
        rows_done += shard.rows_done
        running += shard.state == shard.State.RUNNING
    twice, once_or_more = _one(
        f"SELECT count(CASE WHEN {COLUMN} > 1 THEN 1 END), count(CASE WHEN {COLUMN} > 0 THEN 1 END)"
        f" FROM {TABLE}"
    )
    return Tally(
        rotated=once_or_more,
        twice=twice,
        rows_done=rows_done,
        misplaced=misplaced,
        running=running,
        finished=run.state == Run.State.FINISHED,
    )
