"""How ``mediapulse top`` and ``mediapulse rank`` print a report: a table for people, CSV or JSON for tools.

Machine formats carry every column of the report, unformatted (rates as fractions, times in ISO 8601);
the table shows the columns an analyst reads first, with a footnote on what the numbers mean.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import IO, Any, Literal

from sinks.warehouse.analytics import Report

Format = Literal["table", "csv", "json"]
FORMATS: tuple[Format, ...] = ("table", "csv", "json")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "is_integer") and not isinstance(value, float):  # Decimal from a server
        return float(value)
    return value


def _count(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def _percent(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1%}"


def _number(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{float(value):,.{digits}f}"


@dataclass(frozen=True)
class Shown:
    """One column of the table: its header and how a row's value is shown."""

    header: str
    show: Callable[[dict[str, Any]], str]
    left: bool = False


TOP_TABLE: tuple[Shown, ...] = (
    Shown("content", lambda r: str(r["content_id"]), left=True),
    Shown("title", lambda r: r["title"] or "(unknown)", left=True),
    Shown("impr.", lambda r: _count(r["impressions"])),
    Shown("clicks", lambda r: _count(r["clicks"])),
    Shown("plays", lambda r: _count(r["play_starts"])),
    Shown("compl.", lambda r: _count(r["completions"])),
    Shown("CTR", lambda r: _percent(r["ctr"])),
    Shown("play rate", lambda r: _percent(r["play_rate"])),
    Shown(
        "completion",
        lambda r: _percent(r["completion_rate"]) + ("*" if r["completions_beyond_plays"] else ""),
    ),
    Shown("watch/play (s)", lambda r: _number(r["avg_watch_s_per_play"])),
    Shown("watched", lambda r: _percent(r["watch_ratio"])),
    Shown("viewers (day)", lambda r: _count(r["unique_viewers"])),
    Shown("final", lambda r: "yes" if r["is_final"] else "open"),
)

RANK_TABLE: tuple[Shown, ...] = (
    Shown("content", lambda r: str(r["content_id"]), left=True),
    Shown("title", lambda r: r["title"] or "(unknown)", left=True),
    Shown("successes", lambda r: _count(r["successes"])),
    Shown("trials", lambda r: _count(r["trials"])),
    Shown("rate", lambda r: _percent(r["rate"])),
    Shown("95 % interval", lambda r: f"{_percent(r['lower'])} to {_percent(r['upper'])}"),
    Shown("judged", lambda r: "low traffic" if r["low_traffic"] else "yes"),
    Shown("final", lambda r: "yes" if r["is_final"] else "open"),
)


def write_report(
    report: Report,
    fmt: Format,
    *,
    title: str,
    table: Sequence[Shown],
    notes: Sequence[str] = (),
    out: IO[str] | None = None,
) -> None:
    """Print ``report`` as a table (with ``title`` and ``notes``), CSV (a header row) or JSON (a list)."""
    out = out or sys.stdout
    records = [{k: _plain(v) for k, v in r.items()} for r in report.records()]
    if fmt == "json":
        json.dump(records, out, indent=1)
        out.write("\n")
        return
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=list(report.columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return
    from rich.console import Console
    from rich.table import Table

    shown = Table(title=title)
    for column in table:
        shown.add_column(column.header, justify="left" if column.left else "right")
    for record in report.records():
        shown.add_row(*(column.show(record) for column in table))
    console = Console(file=out, width=None if out.isatty() else 160)
    console.print(shown)
    for note in notes:
        console.print(note, style="dim")
