"""The Django admin for rotation runs: progress, rate, time remaining, the error of an
errored run; pause, resume, cancel and start (admin_control.py: they need
``rotator.control_run``; resume and start enqueue worker tasks).

Everything is read-only: runs change only through the engine and the actions,
which set the run's state exactly like ``--pause`` and ``--cancel``.
Runs are not deleted here (a run can own millions of fingerprints, which the
admin's delete page would list one by one): use ``--purge DAYS``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.db.models.functions import Now
from django.http import HttpRequest
from django.utils.html import format_html

from rotator.admin_control import ControlMixin, status_of
from rotator.models import Run, Shard
from rotator.text import format_duration

COLOURS = {
    "running": "#417690",
    "planned": "#999999",
    "stopped": "#c0a000",
    "paused": "#c0a000",
    "finished": "#2e8540",
    "abandoned": "#ba2121",
}


_status = status_of


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
class RunAdmin(ControlMixin):
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
    change_list_template = "admin/rotator/run/change_list.html"
    readonly_fields = (
        "target",
        "run_state",
        "progress",
        "rows",
        "rate",
        "time_remaining",
        "holders",
        "stop_reason",
        "error",
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
        why = status.error or status.stop_reason
        if why:
            return format_html("{}<br><small>{}</small>", status.state, why)
        return status.state

    @admin.display(description="error")
    def error(self, run: Run) -> str:
        """What stopped an errored run (class and one line; never a value)."""
        return _status(run).error or "-"

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
