"""Measure contenders: fresh table, child process, verification, one Measurement each."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import database, table
from .bootstrap import ROOT, BenchError
from .contenders import BUDGET, SEED, Contender


@dataclass
class Measurement:
    contender: Contender
    rows: int
    measured_rows: int
    seconds: float
    wal_bytes: float
    rss_peak: int
    rss_before: int
    verdict: table.Verdict
    notes: list[str] = field(default_factory=list)
    #: Rows other databases wrote while this ran: its WAL figure includes theirs.
    other_rows: int = 0
    #: Databases created or dropped while this ran (CREATE DATABASE writes WAL too).
    other_dbs: int = 0

    @property
    def extrapolated(self) -> bool:
        return self.measured_rows != self.rows


def run_child(db: str, workload: str, params: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rotator-bench-") as tmp:
        result = Path(tmp) / "result.json"
        job = {"db": db, "workload": workload, "result": str(result), **params}
        proc = subprocess.run(
            [sys.executable, "-m", "bench.child", json.dumps(job)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not result.exists():
            sys.stderr.write(proc.stderr)
            lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
            raise BenchError(f"contender {workload!r} failed in its child process: {lines[-1]}")
        return json.loads(result.read_text())


class Suite:
    """Runs contenders one at a time on the bench database, reporting to ``echo``."""

    def __init__(self, db: str, echo: Callable[[str], None]) -> None:
        self.db = db
        self.echo = echo
        self.checkpoint = True
        self.seeds: list[Measurement] = []
        #: contender name -> rows to run on, once a pilot has decided.
        self.decided: dict[str, int] = {}

    def _fresh_table(self, rows: int) -> None:
        table.reset()
        self.echo(f"  seeding {rows:,} rows ...")
        self.seeds.append(self._measure(SEED, rows, rows, {"rows": rows}, upper=None))
        self.checkpoint = table.snapshot() and self.checkpoint

    def _measure(
        self, contender: Contender, rows: int, sample: int, params: dict[str, Any], upper: Any
    ) -> Measurement:
        before = database.other_writes()
        got = run_child(self.db, contender.workload, {**contender.params, **params})
        others, dbs = database.activity_between(before, database.other_writes())
        if contender is SEED:
            verdict = table.Verdict(got["rows"] == rows, f"{got['rows']:,} rows copied")
        else:
            verdict = table.verify(expected=sample, total=rows, upper=upper)
        scale = rows / sample
        notes = [got["detail"]] if got["detail"] else []
        if sample != rows:
            notes.insert(0, f"extrapolated from {sample:,} rows (RSS as measured)")
        return Measurement(
            contender=contender,
            rows=rows,
            measured_rows=sample,
            seconds=got["seconds"] * scale,
            wal_bytes=got["wal_bytes"] * scale,
            rss_peak=got["rss_peak"],
            rss_before=got["rss_before"],
            verdict=verdict,
            notes=notes,
            other_rows=others,
            other_dbs=dbs,
        )

    def _once(self, contender: Contender, rows: int, sample: int) -> Measurement:
        self._fresh_table(rows)
        lower, upper = table.upper_key(1) - 1, table.upper_key(sample)
        params = {"rows": rows, "lower": lower, "upper": upper}
        what = f"{sample:,}-row sample" if sample < rows else f"{rows:,} rows"
        self.echo(f"  running {contender.name} on {what} ...")
        m = self._measure(contender, rows, sample, params, upper)
        status = "ok" if m.verdict.ok else m.verdict.text
        self.echo(
            f"  {contender.name}: {m.seconds:,.2f} s{' (extrapolated)' * m.extrapolated}, {status}"
        )
        return m

    def run(self, contender: Contender, rows: int) -> Measurement:
        if contender.sample is not None:
            return self._once(contender, rows, min(contender.sample, rows))
        if contender.pilot is None or contender.pilot >= rows:
            return self._once(contender, rows, rows)
        if contender.name in self.decided:
            return self._once(contender, rows, self.decided[contender.name])
        pilot = self._once(contender, rows, contender.pilot)
        if pilot.seconds > BUDGET:
            self.decided[contender.name] = contender.pilot
            pilot.notes.append(
                f"all {rows:,} rows would take about {pilot.seconds / 60:,.0f} min "
                f"(over {BUDGET / 60:.0f})"
            )
            return pilot
        self.decided[contender.name] = rows
        full = self._once(contender, rows, rows)
        full.notes.append(
            f"a {contender.pilot:,}-row pilot projected {pilot.seconds:,.0f} s, so run in full"
        )
        return full
