"""A rotation run and its shards: the plan and the checkpoints.

Keys are stored as text (``str(pk)``) and read back with the primary key
field's ``to_python``, so integer, UUID and string keys all work.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q, Sum


class Run(models.Model):
    class State(models.TextChoices):
        ACTIVE = "active"
        FINISHED = "finished"
        ABANDONED = "abandoned"

    model = models.CharField(max_length=200, help_text="app_label.Model")
    field = models.CharField(max_length=100)
    database = models.CharField(max_length=100)
    state = models.CharField(max_length=20, choices=State.choices, default=State.ACTIVE)
    options = models.JSONField(default=dict)
    high_water = models.TextField(
        null=True, help_text="Largest primary key when planned; later rows are not rotated."
    )
    total_rows = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    heartbeat_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model", "field"],
                condition=Q(state="active"),
                name="rotator_one_active_run_per_field",
            )
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.target}"

    @property
    def target(self) -> str:
        return f"{self.model}.{self.field}"

    def rows_done(self) -> int:
        return self.shards.aggregate(n=Sum("rows_done"))["n"] or 0


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
    rows_done = models.BigIntegerField(default=0)
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    owner = models.CharField(max_length=200, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "index"], name="rotator_shard_index_unique")
        ]
        ordering = ["run", "index"]

    def __str__(self) -> str:
        return f"shard {self.index} of run {self.run_id}"
