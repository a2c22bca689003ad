"""What the admin may do to runs: pause, resume (it enqueues), cancel (after a confirmation
page), start a rotation of a registered target (it enqueues).

Each needs ``rotator.control_run`` (a superuser has it); ``rotator.view_run``
alone shows the runs and no action. The actions go through Django's own
changelist POST (CSRF and Origin checked by CsrfViewMiddleware) and change a
run only through store/lifecycle.py, exactly like ``--pause`` and ``--cancel``.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db import DEFAULT_DB_ALIAS, DatabaseError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from rotator.errors import RotatorError, first_line
from rotator.models import Run
from rotator.service import queueing
from rotator.service.options import Options
from rotator.service.status import RunStatus, run_status
from rotator.store import lifecycle
from rotator.target import resolve_target

PERMISSION = "rotator.control_run"
#: States (as --status names them) of an active run that no live task works.
UNWORKED = ("planned", "stopped")


def status_of(run: Run) -> RunStatus:
    """The run's status, computed once per request (the list shows it in five columns)."""
    cached = getattr(run, "_rotator_status", None)
    if cached is None:
        now = getattr(run, "db_now", None) or lifecycle.database_now(run._state.db or "default")
        cached = run_status(run, now)
        run._rotator_status = cached  # type: ignore[attr-defined]
    return cached


def registered_targets() -> list[str]:
    """The fields the admin may start a rotation of: ``settings.ROTATOR_TARGETS``."""
    return list(getattr(settings, "ROTATOR_TARGETS", []))


def enqueue(run: Run, workers: int) -> str:
    """Send ``workers`` tasks for ``run``; a sentence saying what was done, or why not."""
    from rotator import tasks  # loads the queue's client only when it is used

    workers = queueing.task_count(run.database, workers)
    try:
        tasks.enqueue(run.pk, run.database, workers, {})
    except RotatorError as exc:
        return f"nothing was enqueued: {exc}"
    except Exception as exc:  # a broker down: say it in one line; the run is unchanged
        return f"nothing was enqueued ({type(exc).__name__}: {first_line(exc)})"
    return f"enqueued {workers} worker task{'s' if workers != 1 else ''} on {tasks.backend()}"


def workers_of(run: Run) -> int:
    """How many tasks to enqueue for a run: its shards / 4 (the command plans 4 per worker)."""
    shards = int(run.options.get("shards") or 4)
    return max(1, shards // 4)


class StartForm(forms.Form):
    target = forms.ChoiceField(help_text="A field of settings.ROTATOR_TARGETS.")
    database = forms.ChoiceField(initial=DEFAULT_DB_ALIAS)
    workers = forms.IntegerField(
        min_value=1, max_value=64, initial=4, help_text="Worker tasks to enqueue."
    )
    restart = forms.BooleanField(
        required=False,
        help_text="Abandon the unfinished run, or rotate a finished field again.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, values in (("target", registered_targets()), ("database", settings.DATABASES)):
            field = self.fields[name]
            if not isinstance(field, forms.ChoiceField):
                raise AssertionError("unreachable")
            field.choices = [(value, value) for value in values]


class ControlMixin(admin.ModelAdmin):
    """The actions and the start page of RunAdmin."""

    actions = ("pause_runs", "resume_runs", "cancel_runs")

    def has_control_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(PERMISSION)

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
                "only active runs pause, paused, errored or stopped runs resume, "
                "unfinished runs cancel.",
                level=messages.WARNING,
            )

    def _by(self, request: HttpRequest) -> str:
        return f"admin user {request.user.get_username()!r}"

    @admin.action(
        permissions=["control"],
        description="Pause the selected runs (workers stop after their batch)",
    )
    def pause_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        by = self._by(request)
        self._act(request, queryset, "Paused", lambda run: lifecycle.pause(run, by))

    @admin.action(
        permissions=["control"],
        description="Resume the selected runs (enqueue worker tasks for them)",
    )
    def resume_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        for run in queryset:
            state = status_of(run).state
            if state in (Run.State.PAUSED, Run.State.ERRORED):
                if not lifecycle.resume(run):
                    state = "changed"
            elif state not in UNWORKED:
                self.message_user(
                    request,
                    f"Run {run.pk} was not resumed: it is {state} (only paused, errored or "
                    "stopped runs resume).",
                    level=messages.WARNING,
                )
                continue
            if state == "changed":
                self.message_user(
                    request, f"Run {run.pk} changed state; see it again.", messages.WARNING
                )
                continue
            said = enqueue(run, workers_of(run))
            level = messages.SUCCESS if said.startswith("enqueued") else messages.ERROR
            self.message_user(
                request, f"Resumed run {run.pk}: {said}. Its progress shows here.", level
            )

    @admin.action(
        permissions=["control"],
        description="Cancel the selected runs (asks first; rotated rows stay rotated)",
    )
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> HttpResponse | None:
        if request.POST.get("post") != "yes":
            # As Django's delete_selected: a page that says what will happen, then a POST.
            context = {
                **self.admin_site.each_context(request),
                "title": "Cancel these runs?",
                "runs": list(queryset),
                "queryset": queryset,
                "opts": self.model._meta,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "media": self.media,
            }
            return TemplateResponse(request, "admin/rotator/run/cancel_confirmation.html", context)
        by = self._by(request)
        self._act(request, queryset, "Cancelled", lambda run: lifecycle.cancel(run, by))
        return None

    def get_urls(self) -> list[Any]:
        from django.urls import path

        start = path(
            "start/",
            self.admin_site.admin_view(self.start_view),
            name="rotator_run_start",
        )
        return [start, *super().get_urls()]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {**(extra_context or {}), "can_start": self.has_control_permission(request)}
        return super().changelist_view(request, extra)

    def start_view(self, request: HttpRequest) -> HttpResponse:
        """Plan (or resume) a run of a registered target and enqueue its worker tasks."""
        if not self.has_control_permission(request):
            raise PermissionDenied
        form = StartForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            run = self._start(request, form)
            if run is not None:
                return HttpResponseRedirect(reverse("admin:rotator_run_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Start a rotation",
            "form": form,
            "targets": registered_targets(),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/rotator/run/start.html", context)

    def _start(self, request: HttpRequest, form: StartForm) -> Run | None:
        data = form.cleaned_data
        workers = data["workers"]
        options = Options(workers=workers, restart=data["restart"], resume_hint="Start")
        try:
            from rotator import tasks

            tasks.backend()
            target = resolve_target(data["target"], data["database"])
            run = queueing.prepare(target, options)
        except (RotatorError, DatabaseError) as exc:
            form.add_error(None, first_line(exc))
            return None
        if run is None:
            form.add_error(None, f"{data['target']} has no rows: nothing to rotate.")
            return None
        said = enqueue(run, workers)
        level = messages.SUCCESS if said.startswith("enqueued") else messages.ERROR
        self.message_user(
            request, f"Run {run.pk} of {target.label}: {said}. Its progress shows here.", level
        )
        return run
