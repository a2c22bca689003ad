"""A rotation run and its shards: the plan and the checkpoints.

Keys are stored as text (``str(pk)``) and read back with the primary key
field's ``to_python``, so integer, UUID and string keys all work. A run is
identified by the table and column it rewrites, so a proxy model and its
concrete model are one target.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q, Sum


class Run(models.Model):
    class State(models.TextChoices):
        ACTIVE = "active"
        PAUSED = "paused"
        #: Stopped by an error (error_class, error_message); the next run of the command resumes.
        ERRORED = "errored"
        FINISHED = "finished"
        ABANDONED = "abandoned"

    model = models.CharField(max_length=200, help_text="app_label.Model")
    field = models.CharField(max_length=100)
    table = models.CharField(max_length=200, default="", help_text="Database table rotated.")
    column = models.CharField(max_length=200, default="", help_text="Column rotated.")
    database = models.CharField(max_length=100)
    state = models.CharField(max_length=20, choices=State.choices, default=State.ACTIVE)
    stop_reason = models.CharField(
        max_length=200, blank=True, default="", help_text="Why the run was paused or abandoned."
    )
    error_class = models.CharField(
        max_length=200, blank=True, default="", help_text="Class of the error that stopped it."
    )
    error_message = models.CharField(
        max_length=500, blank=True, default="", help_text="The error's one line (never a value)."
    )
    options = models.JSONField(default=dict)
    high_water = models.TextField(
        null=True, help_text="Largest primary key when planned; later rows are not rotated."
    )
    total_rows = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    heartbeat_at = models.DateTimeField(null=True, help_text="By the database clock.")
    seconds_running = models.FloatField(
        default=0.0,
        help_text="Seconds some process worked the run, by the database clock: pauses and "
        "downtime left out.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["table", "column"],
                condition=Q(state__in=["active", "paused", "errored"]),
                name="rotator_one_unfinished_run_per_column",
            )
        ]
        # Viewing runs (view_run) is not controlling them: the admin's pause, resume,
        # cancel and start need this (rotator/admin.py).
        permissions = [("control_run", "Can start, pause, resume and cancel rotation runs")]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.target}"

    @property
    def unfinished(self) -> bool:
        return self.state in UNFINISHED

    @property
    def target(self) -> str:
        if self.options.get("operation") == "revoke":  # revoke_rows: rows, not a field
            return f"{self.model} (revoke_rows)"
        return f"{self.model}.{self.field}"

    def rows_done(self) -> int:
        # The run's own database: a router may send reads elsewhere (a replica).
        shards = self.shards.using(self._state.db)
        return shards.aggregate(n=Sum("rows_done"))["n"] or 0


class Shard(models.Model):
    class State(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="shards")
    index = models.PositiveIntegerField()
    lower = models.TextField(null=True, help_text="Exclusive; null means from the first row.")
    upper = models.TextField(help_text="Inclusive.")
    cursor = models.TextField(null=True, help_text="Last primary key rotated.")
    rows_planned = models.BigIntegerField()
    rows_done = models.BigIntegerField(default=0, help_text="Rows given a new value.")
    rows_vanished = models.BigIntegerField(
        default=0, help_text="Rows of a batch's window deleted before the batch reached them."
    )
    rows_kept = models.BigIntegerField(
        default=0, help_text="Rows whose value the application changed while the batch ran."
    )
    rows_null = models.BigIntegerField(default=0, help_text="NULL rows left NULL.")
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    # Who works the shard: one invocation (session) of one process, one of its workers.
    owner_session = models.CharField(max_length=32, blank=True, default="")
    owner_worker = models.IntegerField(null=True)
    owner_host = models.CharField(max_length=255, blank=True, default="")
    owner_pid = models.IntegerField(null=True)
    heartbeat_at = models.DateTimeField(null=True, help_text="By the database clock.")
    lease_until = models.DateTimeField(
        null=True,
        help_text="The owner's lease ends then, by the database clock; every batch renews it, "
        "and a batch commits only while it holds an unexpired lease.",
    )
    finished_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "index"], name="rotator_shard_index_unique")
        ]
        ordering = ["run", "index"]

    def __str__(self) -> str:
        return f"shard {self.index} of run {self.run_id}"

    @property
    def owner(self) -> str:
        """The owner for people: host, pid, worker (never parsed back)."""
        if not self.owner_session:
            return ""
        return f"{self.owner_host} pid {self.owner_pid} worker {self.owner_worker}"


def _rows_of_run(related_name: str) -> models.ForeignKey:
    """The run of a proof row: many per run, read only with their run, deleted with it
    (by Django: no database constraint, and no index of its own to keep up)."""
    return models.ForeignKey(
        Run,
        on_delete=models.CASCADE,
        related_name=related_name,
        db_index=False,
        db_constraint=False,
    )


class Fingerprint(models.Model):
    """A keyed fingerprint of one row's value before its run rotated it: never the value.

    Written by the batch that rotates the row, in its transaction (so exactly once),
    as the first 60 bits of sha256(key || value as text), where the key is derived
    from ``settings.SECRET_KEY`` and the run and is never stored in the database: a
    copy of the database alone cannot test guesses against it. ``--verify`` and the
    check that ends every run compare the table against these.

    No index but the primary key: a unique (run, key) index was most of what
    fingerprints cost (each batch probed it per row), and even an index on the run
    cost a fifth of them; every check reads all of a run's fingerprints anyway
    (one scan of this table: purge old runs to keep it small). A run fingerprints
    each row once (its batches are exactly once); a run restarted with
    ``--restart`` adds the values it finds to the proof it inherits, so a row may
    have two fingerprints there (its value before each run): the checks treat the
    fingerprints as a set, and --verify counts distinct keys.
    """

    run = _rows_of_run("fingerprints")
    key = models.CharField(max_length=255, help_text="Primary key, as text.")
    digest = models.BigIntegerField(
        null=True, help_text="First 60 bits of sha256(run key || value as text); NULL for NULL."
    )

    def __str__(self) -> str:
        return f"fingerprint of row {self.key} in run {self.run_id}"


class ProofArray(models.Field):
    """A column of ``element`` values: an array on PostgreSQL, the only database whose
    statements write it (in SQL, never through the ORM); empty text elsewhere."""

    def __init__(self, *args: Any, element: str = "text", **kwargs: Any) -> None:
        self.element = element
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        return name, path, args, {**kwargs, "element": self.element}

    def db_type(self, connection: Any) -> str:
        from rotator.sql import builder_for

        return builder_for(connection).proof_array_type(connection, self.element)


class FingerprintSet(models.Model):
    """The fingerprints of one batch's window (PostgreSQL): its rows' keys and digests as
    two arrays, in one row (see ``Fingerprint`` for what a digest is).

    One row per batch, not per rotated row: a row of its own (a heap tuple and a
    primary-key entry) was most of what the proof cost. The batch statement writes it
    from the old values it reads; the checks read the keys and digests back as rows
    through the view ``rotator_fingerprint_rows`` (with any ``Fingerprint`` rows).
    """

    run = _rows_of_run("fingerprint_sets")
    size = models.IntegerField(help_text="Rows fingerprinted: the arrays' length.")
    keys = ProofArray(element="text", help_text="Primary keys, as text.")
    digests = ProofArray(element="bigint", help_text="Their digests, in the same order.")

    def __str__(self) -> str:
        return f"{self.size} fingerprints of run {self.run_id}"


class Reservation(models.Model):
    """A new value a batch is about to write, by keyed hash (never the value).

    A batch inserts its candidates' hashes (``ON CONFLICT DO NOTHING``) before its
    UPDATE and deletes them before it commits: a second worker drawing the same value
    waits for the first to commit, then sees the value taken, so no unique violation
    (whose DETAIL would log the value) can happen between workers.
    """

    digest = models.CharField(max_length=32, primary_key=True)

    def __str__(self) -> str:
        return f"reservation {self.digest[:8]}"


#: States a run can be resumed from; at most one such run per table and column.
UNFINISHED = (Run.State.ACTIVE, Run.State.PAUSED, Run.State.ERRORED)


class RevocationKey(models.Model):
    """One row a revocation plans to delete: its key, numbered in key order.

    ``revoke_rows`` copies the keys of the rows it will delete here when it plans
    (one INSERT ... SELECT on the server: the keys never leave the database) and
    its shards are ranges of ``seq``. So cursors, shard bounds and every bind
    parameter are row numbers, never keys, which may be the secrets themselves
    (a DRF token, a session key); and rows created after the plan (new sessions)
    are never deleted. The keys are deleted with their run's end.
    """

    snapshot = models.CharField(max_length=32, help_text="Run.options['snapshot'].")
    seq = models.BigIntegerField(help_text="1, 2, ... in key order.")
    key = models.TextField(help_text="The row's primary key, as the database's text.")

    class Meta:
        indexes = [models.Index(fields=["snapshot", "seq"], name="rotator_revocation_seq")]

    def __str__(self) -> str:
        return f"row {self.seq} of revocation {self.snapshot}"


class Writer(models.Model):
    """A transaction that wrote rows for a run (PostgreSQL): a batch's, a sweep's.

    The check that finishes a run hashes only the rows whose current version some
    other transaction wrote (``xmin`` not one of the run's writers): a row still as
    its batch left it holds the new value that batch gave it, so only rows written
    since (by the application, say) or never rotated can hold a pre-rotation value.
    ``top`` (the writing transaction's 64-bit id) lets the check see when the run
    spans enough transactions for a 32-bit id to come round again; it then hashes
    every row. ``--verify`` always hashes every row.
    """

    run = _rows_of_run("writers")
    xid = models.BigIntegerField(help_text="The rows' xmin: the (sub)transaction's 32-bit id.")
    top = models.BigIntegerField(help_text="The top transaction's 64-bit id (txid_current()).")

    def __str__(self) -> str:
        return f"writer {self.xid} of run {self.run_id}"


class Seal(models.Model):
    """A key range as a run's batch left it (MariaDB): a keyed checksum of its rows.

    MariaDB has no ``xmin`` to tell which rows a batch left as they are, so each batch
    of an integer-keyed table seals the range it rotated, ``(lo, hi]``, in its own
    transaction: ``seal`` is a keyed hash of the range's row count, its non-NULL count
    and the XOR of a 64-bit checksum of each row's key and value. The check that
    finishes a run recomputes every seal (one cheap pass over the table) and hashes
    only the rows outside the ranges whose seal still holds: rows the application
    wrote since their batch, rows born or never rotated. A batch that left a row to
    the application (changed while it ran), or whose range holds a row its window
    did not (inserted meanwhile), seals nothing. ``--verify`` always hashes every row.
    """

    run = _rows_of_run("seals")
    lo = models.CharField(
        max_length=255, null=True, help_text="Exclusive lower key, as text; NULL: none."
    )
    hi = models.CharField(max_length=255, help_text="Inclusive upper key, as text.")
    seal = models.CharField(max_length=32, help_text="Keyed hash of the range's rows.")

    def __str__(self) -> str:
        return f"seal ({self.lo}, {self.hi}] of run {self.run_id}"
