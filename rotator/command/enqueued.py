"""--enqueue (and --wait): the rotation on the task queue, as the command shows it."""

from __future__ import annotations

from django.db import connections

from rotator.command.console import Console
from rotator.command.progress import Stream
from rotator.errors import ExitStatus, Interrupted, RotatorError
from rotator.models import Run
from rotator.service import queueing
from rotator.service.options import Options
from rotator.target import Target
from rotator.tasks import backend, enqueue


def enqueue_and_report(
    target: Target, options: Options, wait: bool, command: str, out: Stream, err: Stream
) -> None:
    """Plan or resume the run, send ``options.workers`` tasks; with ``wait``, follow it."""
    name = backend()  # a missing extra or a bad setting stops us before anything changes
    console = Console(out, err, options, target.label)
    run = queueing.prepare(target, options, console)
    if run is None:
        return
    count = queueing.task_count(target.alias, options.workers)
    if count < options.workers:
        console.note(
            f"{connections[target.alias].display_name} has a single writer: enqueuing one "
            f"worker task, not {options.workers}."
        )
    enqueue(run.pk, target.alias, count, queueing.task_options(options))
    tasks = f"{count} worker task{'s' if count != 1 else ''}"
    console.note(
        f"Enqueued {tasks} on {name} for run {run.pk} of {target.label}. "
        f"Follow it with: {command} --status"
    )
    if wait:
        follow_and_report(run, target, options, console)


def follow_and_report(run: Run, target: Target, options: Options, console: Console) -> None:
    """Show the run's progress until it ends; raise what ended it, as the exit status."""
    progress = console.progress(run, options.workers)
    try:
        run = queueing.follow(run, progress)
    except KeyboardInterrupt:
        raise Interrupted(
            f"Stopped following run {run.pk}; its tasks go on: see --status",
            ExitStatus.SIGINT,
        ) from None
    finally:
        progress.close()
    done = f"{run.rows_done():,}/{run.total_rows:,} rows of {target.label} rotated"
    why = f" ({run.stop_reason})" if run.stop_reason else ""
    if run.state == Run.State.FINISHED:
        console.note(f"Run {run.pk} finished: {done}.")
        return
    if run.state == Run.State.PAUSED:
        raise Interrupted(
            f"Paused by an operator{why}: {done}; resume with --enqueue", ExitStatus.PAUSED
        )
    if run.state == Run.State.ERRORED:
        raise RotatorError(
            f"Run {run.pk} stopped on an error ({run.error_class}: {run.error_message}): "
            f"{done}; resume with --enqueue"
        )
    raise Interrupted(f"Run {run.pk} was {run.state}{why}: {done}", ExitStatus.CANCELLED)
