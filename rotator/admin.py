"""The Django admin for rotation runs: progress, rate, time remaining; pause, resume, cancel.

Everything is read-only: runs change only through the engine and the three
actions, which set the run's state exactly like ``--pause`` and ``--cancel``.
Runs are not deleted here (a run can own millions of fingerprints, which the
admin's delete page would list one by one): use ``--purge DAYS``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.db.models.functions import Now
from django.http import HttpRequest
from django.utils.html import format_html

from rotator.models import Run, Shard
from rotator.service.status import RunStatus, run_status
from rotator.store import lifecycle
from rotator.text import format_duration

COLOURS = {
    "running": "#417690",
    "planned": "#999999",
    "stopped": "#c0a000",
    "paused": "#c0a000",
    "finished": "#2e8540",
    "abandoned": "#ba2121",
}


def _status(run: Run) -> RunStatus:
    cached = getattr(run, "_rotator_status", None)
    if cached is None:
        now = getattr(run, "db_now", None) or lifecycle.database_now(run._state.db or "default")
        cached = run_status(run, now)
        run._rotator_status = cached  # type: ignore[attr-defined]
    return cached


class ShardInline(admin.TabularInline):
    model = Shard
    extra = 0
    can_delete = False
    show_change_link = False
    fields = (
        "index",
        "state",
        "rows_done",
        "rows_planned",
        "rows_vanished",
        "rows_kept",
        "rows_null",
        "lower",
        "upper",
        "cursor",
        "owner",
        "heartbeat_at",
        "finished_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "target",
        "run_state",
        "progress",
        "rows",
        "rate",
        "time_remaining",
        "started_at",
        "finished_at",
    )
    list_display_links = ("id", "target")
    list_filter = ("state",)
    ordering = ("-id",)
    inlines = (ShardInline,)
    actions = ("pause_runs", "resume_runs", "cancel_runs")
    readonly_fields = (
        "target",
        "run_state",
        "progress",
        "rows",
        "rate",
        "time_remaining",
        "holders",
        "stop_reason",
        "table",
        "column",
        "database",
        "options",
        "high_water",
        "total_rows",
        "created_at",
        "started_at",
        "finished_at",
        "heartbeat_at",
    )
    fields = readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Run]:
        # One query for the runs (with the database's clock), one for all their shards.
        return super().get_queryset(request).annotate(db_now=Now()).prefetch_related("shards")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="state")
    def run_state(self, run: Run) -> str:
        status = _status(run)
        if status.stop_reason:
            return format_html("{}<br><small>{}</small>", status.state, status.stop_reason)
        return status.state

    @admin.display(description="progress")
    def progress(self, run: Run) -> str:
        status = _status(run)
        return format_html(
            '<div class="rotator-progress" data-percent="{}" style="width:160px;'
            'background:#e0e0e0;border-radius:3px">'
            '<div style="width:{}%;height:12px;background:{};border-radius:3px"></div></div>'
            '<span class="rotator-percent">{}%</span>',
            f"{status.percent:.1f}",
            f"{min(status.percent, 100.0):.1f}",
            COLOURS.get(status.state, "#417690"),
            f"{status.percent:.1f}",
        )

    @admin.display(description="rows")
    def rows(self, run: Run) -> str:
        status = _status(run)
        return f"{status.rows_done:,}/{status.rows_planned:,}"

    @admin.display(description="rate")
    def rate(self, run: Run) -> str:
        status = _status(run)
        return "-" if status.rate is None else f"{status.rate:,.0f} rows/s"

    @admin.display(description="time remaining")
    def time_remaining(self, run: Run) -> str:
        left = _status(run).seconds_remaining
        return "-" if left is None else format_duration(left)

    @admin.display(description="held by")
    def holders(self, run: Run) -> str:
        held = [
            f"{h.host} pid {h.pid}: workers {', '.join(map(str, h.workers))}, "
            f"{'alive' if h.alive else 'dead'}"
            for h in _status(run).holders
        ]
        return "; ".join(held) or "-"

    def _act(self, request: HttpRequest, runs: QuerySet[Run], verb: str, change: Any) -> None:
        moved = [run.pk for run in runs if change(run)]
        skipped = len(runs) - len(moved)
        if moved:
            ids = ", ".join(str(pk) for pk in moved)
            self.message_user(request, f"{verb} run{'s' if len(moved) > 1 else ''} {ids}.")
        if skipped:
            self.message_user(
                request,
                f"{skipped} selected run{'s were' if skipped > 1 else ' was'} not {verb.lower()}: "
                "only active runs pause, paused runs resume, unfinished runs cancel.",
                level=messages.WARNING,
            )

    def _by(self, request: HttpRequest) -> str:
        return f"admin user {request.user.get_username()!r}"

    @admin.action(description="Pause the selected runs (workers stop after their batch)")
    def pause_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        by = self._by(request)
        self._act(request, queryset, "Paused", lambda run: lifecycle.pause(run, by))

    @admin.action(description="Resume the selected runs (clear the pause)")
    def resume_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        self._act(request, queryset, "Resumed", lifecycle.resume)

    @admin.action(description="Cancel the selected runs (rotated rows stay rotated)")
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        by = self._by(request)
        self._act(request, queryset, "Cancelled", lambda run: lifecycle.cancel(run, by))
