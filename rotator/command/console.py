"""What the command prints of a rotation: the service's notes, the progress display, the
summary, at the verbosity asked for."""

from __future__ import annotations

from rotator.command.checks import CheckProgress
from rotator.command.progress import Progress, Stream
from rotator.models import Run
from rotator.service.options import Options
from rotator.service.rotation import Report, Stopper, rotate
from rotator.target import Target
from rotator.text import format_duration


class Console:
    """The service's Events, shown on the command's streams."""

    def __init__(self, out: Stream, err: Stream, options: Options, label: str) -> None:
        self.out, self.err, self.options, self.label = out, err, options, label
        # The final check of a run: on a terminal only (plain lines would join the log's).
        tty = options.tty and options.progress in ("auto", "bar")
        self._check = CheckProgress(err, label, options.verbosity, tty, plain=False)

    def check_step(self, done: int, steps: int, running: str, seconds: float, share: float) -> None:
        self._check.check_step(done, steps, running, seconds, share)

    def note(self, text: str) -> None:
        if self.options.verbosity >= 1:
            self.out.write(text)

    def progress(self, run: Run, workers: int) -> Progress:
        options = self.options
        return Progress(
            self.err,
            total=run.total_rows,
            initial=run.rows_done(),
            verbosity=options.verbosity,
            tty=options.tty,
            interval=options.progress_interval,
            desc=self.label,
            mode=options.progress,
            run_id=run.pk,
            workers=workers,
        )


def rotate_and_report(
    target: Target, options: Options, out: Stream, err: Stream, stopper: Stopper | None = None
) -> Report:
    """rotate() with its notes, progress and summary printed as the command prints them."""
    report = rotate(target, options, Console(out, err, options, target.label), stopper)
    for line in report.dry_run:
        out.write(line)
    if options.verbosity >= 1 and not report.dry_run and report.run_id is not None:
        for line in summary(report, target):
            out.write(line)
    return report


def summary(report: Report, target: Target) -> list[str]:
    """The lines after a rotation: what this call did, and where every planned row went."""
    rate = report.rows / report.seconds if report.seconds > 0 else 0.0
    lines = [
        f"Rotated {report.rows:,} rows of {target.label} in {format_duration(report.seconds)} "
        f"({rate:,.0f} rows/s) with {report.workers} worker{'s' if report.workers != 1 else ''}; "
        f"run {report.run_id} " + ("finished." if report.finished else "is not finished.")
    ]
    if report.finished_elsewhere:
        lines[0] = lines[0].replace("finished.", "finished (by another process).")
    accounting = _accounting(report) if report.finished else None
    if accounting:
        lines.append(accounting)
    if report.finished:
        # Before the summary line, which scripts and tests read as the last ones.
        lines.insert(0, _proof(report, target))
    elif not report.finished:
        where = f" by {', '.join(report.held_elsewhere)}" if report.held_elsewhere else ""
        lines.append(f"Its remaining shards are being rotated{where}.")
    return lines


def _proof(report: Report, target: Target) -> str:
    """What the check that finished the run found."""
    if report.verified is None:
        return (
            f"Not verified: run {report.run_id} has no fingerprints (--no-fingerprints); "
            "--leaked FILE checks a dump."
        )
    back = (
        f"{report.swept:,} row{'s' if report.swept != 1 else ''} written back by the "
        "application after their batch were rotated again"
        if report.swept
        else "no row was written back by the application"
    )
    return f"Verified: no planned row of {target.label} holds its pre-rotation value ({back})."


def _accounting(report: Report) -> str | None:
    """Where every planned row went, when not every one was simply rotated."""
    parts = [f"{report.rotated:,} rotated"]
    if report.kept:
        parts.append(f"{report.kept:,} kept the value the application gave them meanwhile")
    if report.null:
        parts.append(f"{report.null:,} NULL left NULL")
    unseen = report.total_rows - report.rotated - report.kept - report.null
    vanished = report.vanished + max(0, unseen - report.vanished)
    if vanished and not report.estimated:
        parts.append(f"{vanished:,} vanished (deleted during the run)")
    if len(parts) == 1 and not report.estimated:
        return None
    about = "about " if report.estimated else ""
    return (
        f"Run {report.run_id}: {about}{report.total_rows:,} rows planned; " + ", ".join(parts) + "."
    )
