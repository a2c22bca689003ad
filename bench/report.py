"""Turn measurements into the markdown table (stdout) and the CSV file."""

from __future__ import annotations

import csv
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .suite import Measurement

MIB = 1024 * 1024


@dataclass(frozen=True)
class Row:
    """All repeats of one contender at one size."""

    runs: list[Measurement]

    @property
    def first(self) -> Measurement:
        return self.runs[0]

    @property
    def seconds(self) -> float:
        return statistics.median(m.seconds for m in self.runs)

    @property
    def wal_bytes(self) -> float:
        return statistics.median(m.wal_bytes for m in self.runs)

    @property
    def rss_peak(self) -> int:
        return max(m.rss_peak for m in self.runs)

    @property
    def rss_before(self) -> int:
        return max(m.rss_before for m in self.runs)

    @property
    def rate(self) -> float:
        return self.first.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def extrapolated(self) -> bool:
        return any(m.extrapolated for m in self.runs)

    @property
    def other_rows(self) -> int:
        return max(m.other_rows for m in self.runs)

    @property
    def other_dbs(self) -> int:
        return max(m.other_dbs for m in self.runs)

    @property
    def ok(self) -> bool:
        return all(m.verdict.ok for m in self.runs)

    @property
    def verified(self) -> str:
        bad = [m.verdict.text for m in self.runs if not m.verdict.ok]
        if bad:
            return bad[0]
        text = self.first.verdict.text
        return f"ok, {text}" + (f" (x{len(self.runs)})" if len(self.runs) > 1 else "")

    @property
    def notes(self) -> str:
        seen: list[str] = []
        for m in self.runs:
            seen += [n for n in m.notes if n not in seen]
        if self.other_rows or self.other_dbs:
            what = [f"{self.other_rows:,} rows written"] if self.other_rows else []
            what += [f"{self.other_dbs} created or dropped"] if self.other_dbs else []
            seen.append(f"meanwhile other databases: {', '.join(what)} (their WAL counts too)")
        return "; ".join(seen)


def group(measurements: Iterable[Measurement]) -> list[Row]:
    """One row per (contender, rows), in first-run order."""
    rows: dict[tuple[str, int], list[Measurement]] = {}
    for m in measurements:
        rows.setdefault((m.contender.name, m.rows), []).append(m)
    return [Row(runs) for runs in rows.values()]


def _wall(row: Row) -> str:
    text = f"{'~' if row.extrapolated else ''}{row.seconds:,.2f} s"
    if len(row.runs) > 1:
        low, high = min(m.seconds for m in row.runs), max(m.seconds for m in row.runs)
        text += f" ({low:,.2f}-{high:,.2f})"
    return text


def mib(n: float, approx: bool = False) -> str:
    return f"{'~' if approx else ''}{n / MIB:,.1f} MiB"


def _ratio(row: Row, floor: Row | None) -> str:
    return f"{row.seconds / floor.seconds:,.2f}x" if floor and floor.seconds > 0 else "n/a"


def _md(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return "\n".join(out)


def floor_of(rows: list[Row]) -> Row | None:
    return next((r for r in rows if r.first.contender.name == "floor"), None)


def table(rows: list[Row]) -> str:
    floor = floor_of(rows)
    header = [
        "Contender",
        "Rows",
        "Wall",
        "Rows/s",
        "x floor",
        "Peak RSS",
        "WAL",
        "Verified",
        "Notes",
    ]
    return _md(
        header,
        [
            [
                r.first.contender.label.replace("|", "\\|"),
                f"{r.first.rows:,}",
                _wall(r),
                f"{r.rate:,.0f}",
                _ratio(r, floor),
                mib(r.rss_peak),
                mib(r.wal_bytes, r.extrapolated),
                r.verified,
                r.notes,
            ]
            for r in rows
        ],
    )


def memory_table(rows: list[Row]) -> str:
    header = [
        "Contender",
        "Rows",
        "Wall",
        "Rows/s",
        "RSS before work",
        "Peak RSS",
        "Growth",
        "WAL",
        "Verified",
    ]
    return _md(
        header,
        [
            [
                r.first.contender.label,
                f"{r.first.rows:,}",
                _wall(r),
                f"{r.rate:,.0f}",
                mib(r.rss_before),
                mib(r.rss_peak),
                mib(r.rss_peak - r.rss_before),
                mib(r.wal_bytes),
                r.verified,
            ]
            for r in rows
        ],
    )


def write_csv(path: Path, rows: list[Row]) -> None:
    floor = floor_of(rows)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "contender",
                "label",
                "rows",
                "measured_rows",
                "extrapolated",
                "repeats",
                "wall_s_median",
                "wall_s_min",
                "wall_s_max",
                "rows_per_s",
                "x_floor",
                "rss_before_bytes",
                "rss_peak_bytes",
                "wal_bytes",
                "other_db_rows",
                "other_dbs_created_dropped",
                "verified",
                "notes",
            ]
        )
        for r in rows:
            writer.writerow(
                [
                    r.first.contender.name,
                    r.first.contender.label,
                    r.first.rows,
                    r.first.measured_rows,
                    r.extrapolated,
                    len(r.runs),
                    f"{r.seconds:.3f}",
                    f"{min(m.seconds for m in r.runs):.3f}",
                    f"{max(m.seconds for m in r.runs):.3f}",
                    f"{r.rate:.0f}",
                    f"{r.seconds / floor.seconds:.3f}" if floor and floor.seconds > 0 else "",
                    r.rss_before,
                    r.rss_peak,
                    f"{r.wal_bytes:.0f}",
                    r.other_rows,
                    r.other_dbs,
                    r.ok,
                    r.notes,
                ]
            )
