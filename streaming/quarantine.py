"""``mediapulse quarantine stats|show``: what the lake's quarantine holds, read without Spark.

The quarantine (``<lake>/quarantine/ingest_date=…/checkpoint_id=…/batch_id=…/*.parquet``, see
:mod:`sinks.lake`) is opened as a pyarrow dataset (local or ``s3://``; folders starting with ``_`` or
``.``, where Spark stages unfinished writes, are skipped) and queried with DuckDB, so the commands answer
in about a second, without starting a JVM.

``stats`` counts records by ingestion day and reason code (a record with two reasons counts under both);
``show --reason R`` prints sample records, raw text first as it arrived, with their source and reasons. A
reason is a code (``missing_field:user_id``) or its kind (``missing_field``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from streaming.commands import UsageError, add_config_arguments, exit_code


class QuarantineError(UsageError):
    """The lake holds no quarantine to read (nothing quarantined yet, or a wrong ``lake.path``)."""


@dataclass(frozen=True)
class ReasonCount:
    day: date
    reason: str
    records: int


@dataclass(frozen=True)
class QuarantinedRecord:
    ingest_time: datetime
    source: str
    reasons: tuple[str, ...]
    raw: str | None


def quarantine_dataset(lake_path: str) -> Any:
    """The quarantine of the lake at ``lake_path`` as a pyarrow dataset (hive-partitioned)."""
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    root = f"{lake_path.rstrip('/')}/quarantine"
    fs, path = pafs.FileSystem.from_uri(root) if "://" in root else (pafs.LocalFileSystem(), root)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        raise QuarantineError(f"no quarantine at {root}: nothing quarantined yet, or lake.path is wrong")
    return ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive")


def _query(dataset: Any, statement: str, params: list[Any]) -> list[tuple[Any, ...]]:
    import duckdb

    with duckdb.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.register("quarantine", dataset)
        return conn.execute(statement, params).fetchall()


def _day_filter(start: date | None, end: date | None) -> tuple[str, list[Any]]:
    """A WHERE clause on the ingestion day (``start`` inclusive, ``end`` exclusive), pushed to the dataset."""
    terms, params = ["TRUE"], []
    if start is not None:
        terms.append("CAST(ingest_date AS DATE) >= ?")
        params.append(start)
    if end is not None:
        terms.append("CAST(ingest_date AS DATE) < ?")
        params.append(end)
    return " AND ".join(terms), params


def _reason_filter(reason: str) -> tuple[str, list[Any]]:
    return "len(list_filter(reasons, lambda r: r = ? OR starts_with(r, ? || ':'))) > 0", [reason, reason]


def reason_counts(lake_path: str, start: date | None = None, end: date | None = None) -> list[ReasonCount]:
    """Quarantined records per ingestion day and reason code, oldest day first, then most records."""
    where, params = _day_filter(start, end)
    rows = _query(
        quarantine_dataset(lake_path),
        f"SELECT CAST(ingest_date AS DATE) AS day, reason, count(*) AS records "
        f"FROM (SELECT ingest_date, unnest(reasons) AS reason FROM quarantine WHERE {where}) "
        f"GROUP BY day, reason ORDER BY day, records DESC, reason",
        params,
    )
    return [ReasonCount(day, reason, int(records)) for day, reason, records in rows]


def sample_records(
    lake_path: str, reason: str, limit: int = 10, start: date | None = None, end: date | None = None
) -> list[QuarantinedRecord]:
    """Up to ``limit`` quarantined records with ``reason`` (a code, or a kind such as ``wrong_type``),
    the most recently ingested first."""
    where, params = _day_filter(start, end)
    matches, reason_params = _reason_filter(reason)
    rows = _query(
        quarantine_dataset(lake_path),
        f"SELECT ingest_time, source, reasons, raw FROM quarantine WHERE {where} AND {matches} "
        f"ORDER BY ingest_time DESC, source LIMIT ?",
        [*params, *reason_params, limit],
    )
    return [QuarantinedRecord(t, source, tuple(reasons), raw) for t, source, reasons, raw in rows]


# --------------------------------------------------------------------------------------------- CLI


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``quarantine stats|show`` to the CLI; each sets ``func(args) -> exit code``."""
    parser = subparsers.add_parser("quarantine", help="count and show the lake's quarantined records")
    commands = parser.add_subparsers(dest="quarantine_command", metavar="COMMAND", required=True)

    def common(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_config_arguments(sub)
        sub.add_argument("--from", dest="start", type=date.fromisoformat, help="first ingestion day (UTC)")
        sub.add_argument("--to", dest="end", type=date.fromisoformat, help="ingestion day to stop before")
        return sub

    common("stats", "quarantined records by ingestion day and reason code").set_defaults(func=_run_stats)
    show = common("show", "print sample quarantined records of one reason, newest first")
    show.add_argument("--reason", required=True, help="a reason code (missing_field:user_id) or its kind")
    show.add_argument("--limit", type=_positive_int, default=10, metavar="N", help="records (default: 10)")
    show.set_defaults(func=_run_show)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _lake_path(args: argparse.Namespace) -> str:
    from streaming.config import load_config

    return load_config(args.config, args.overrides).lake.path


def _guarded(run: Any) -> Any:
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except UsageError as e:
            sys.stderr.write(f"error: {e}\n")
            return exit_code(e)

    return wrapper


@_guarded
def _run_stats(args: argparse.Namespace) -> int:
    counts = reason_counts(_lake_path(args), args.start, args.end)
    if not counts:
        sys.stdout.write("no quarantined records\n")
        return 0
    width = max(len("reason"), *(len(c.reason) for c in counts))
    sys.stdout.write(f"{'day':<10}  {'reason':<{width}}  {'records':>9}\n")
    for c in counts:
        sys.stdout.write(f"{c.day.isoformat():<10}  {c.reason:<{width}}  {c.records:>9}\n")
    sys.stdout.write(f"{'total':<10}  {'(a record with two reasons counts twice)':<{width}}  "
                     f"{sum(c.records for c in counts):>9}\n")  # fmt: skip
    return 0


@_guarded
def _run_show(args: argparse.Namespace) -> int:
    records = sample_records(_lake_path(args), args.reason, args.limit, args.start, args.end)
    if not records:
        sys.stdout.write(f"no quarantined records with reason {args.reason}\n")
        return 0
    for record in records:
        reasons = ", ".join(record.reasons)
        sys.stdout.write(f"{record.ingest_time:%Y-%m-%d %H:%M:%S}  {record.source}  {reasons}\n")
        sys.stdout.write(f"  {record.raw}\n")
    return 0
