"""``mediapulse quarantine stats|show|replay``: what the lake's quarantine holds, and sending it back.

The quarantine (``<lake>/quarantine/ingest_date=…/checkpoint_id=…/batch_id=…/*.parquet``, see
:mod:`sinks.lake`) is opened as a pyarrow dataset (local or ``s3://``; folders starting with ``_`` or
``.``, where Spark stages unfinished writes, are skipped) and queried with DuckDB, so the commands answer
in about a second, without starting a JVM.

``stats`` counts records by ingestion day and reason code (a record with two reasons counts under both);
``show --reason R`` prints sample records, raw text first as it arrived, with their source and reasons. A
reason is a code (``missing_field:user_id``) or its kind (``missing_field``). Records that
``replay`` (:mod:`streaming.replay`, with Spark) sent through the pipeline again stay in the quarantine;
the replay ledger (``<lake>/quarantine_replays/``) marks them, and ``stats`` counts them apart.
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
    replayed: int = 0  # of ``records``, sent through the pipeline again by a replay


@dataclass(frozen=True)
class QuarantinedRecord:
    ingest_time: datetime
    source: str
    reasons: tuple[str, ...]
    raw: str | None


def _dataset(root: str, missing: str | None) -> Any:
    """The Parquet dataset at ``root`` (hive-partitioned); when it does not exist, None, or with
    ``missing`` a :class:`QuarantineError` of that text."""
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(root) if "://" in root else (pafs.LocalFileSystem(), root)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        if missing is None:
            return None
        raise QuarantineError(missing)
    return ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive")


def quarantine_dataset(lake_path: str) -> Any:
    """The quarantine of the lake at ``lake_path`` as a pyarrow dataset (hive-partitioned)."""
    root = f"{lake_path.rstrip('/')}/quarantine"
    return _dataset(root, f"no quarantine at {root}: nothing quarantined yet, or lake.path is wrong")


def _query(dataset: Any, statement: str, params: list[Any], replayed: Any = None) -> list[tuple[Any, ...]]:
    import duckdb

    with duckdb.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.register("quarantine", dataset)
        if replayed is not None:
            conn.register("replayed", replayed)
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
    """Quarantined records per ingestion day and reason code (and how many of them a replay sent),
    oldest day first, then most records."""
    from streaming.schema import REPLAYED_KEY

    where, params = _day_filter(start, end)
    replayed = _dataset(f"{lake_path.rstrip('/')}/quarantine_replays", None)
    marked = "FALSE"
    if replayed is not None:
        # A ledger row names its quarantine row; partition values may read as numbers: compare as text.
        keys = [k for k in REPLAYED_KEY if k != "raw_sha256"]
        same = " AND ".join(f"CAST(q.{k} AS VARCHAR) = CAST(r.{k} AS VARCHAR)" for k in keys)
        marked = f"EXISTS (SELECT 1 FROM replayed r WHERE {same} AND r.raw_sha256 = sha256(q.raw))"
    rows = _query(
        quarantine_dataset(lake_path),
        f"SELECT CAST(ingest_date AS DATE) AS day, reason, count(*) AS records, count_if(done) AS replayed "
        f"FROM (SELECT ingest_date, unnest(reasons) AS reason, done FROM "
        f"(SELECT q.ingest_date, q.reasons, {marked} AS done FROM quarantine q WHERE {where})) "
        f"GROUP BY day, reason ORDER BY day, records DESC, reason",
        params,
        replayed,
    )
    return [ReasonCount(day, reason, int(records), int(done)) for day, reason, records, done in rows]


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
    replay = common(
        "replay",
        "send the quarantined records of one reason that the current contract accepts through the "
        "pipeline, once; the others stay quarantined",
    )
    replay.add_argument("--reason", required=True, help="a reason code (unknown_platform) or its kind")
    replay.add_argument("--dry-run", action="store_true", help="count what it would send; write nothing")
    replay.set_defaults(func=_run_replay)
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
    note = "(a record with two reasons counts twice)"
    width = max(len("reason"), len(note), *(len(c.reason) for c in counts))
    sys.stdout.write(f"{'day':<10}  {'reason':<{width}}  {'records':>9}  {'replayed':>9}  {'open':>9}\n")
    for c in [*counts, ReasonCount(date.min, note, *_totals(counts))]:
        day = "total" if c.day == date.min else c.day.isoformat()
        sys.stdout.write(
            f"{day:<10}  {c.reason:<{width}}  {c.records:>9}  {c.replayed:>9}  {c.records - c.replayed:>9}\n"
        )
    return 0


def _totals(counts: list[ReasonCount]) -> tuple[int, int]:
    return sum(c.records for c in counts), sum(c.replayed for c in counts)


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


@_guarded
def _run_replay(args: argparse.Namespace) -> int:
    from streaming.config import FilesSourceConfig, load_config
    from streaming.replay import Selection, is_known_reason, replay_quarantined
    from streaming.session import build_session

    # Everything that can be checked without Spark is, before the JVM starts.
    if not is_known_reason(args.reason):
        raise QuarantineError(
            f"unknown reason {args.reason!r}: give a reason code (unknown_platform, missing_field:user_id) "
            "or its kind (missing_field), as `mediapulse quarantine stats` lists them"
        )
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise QuarantineError(f"--to {args.end} must be after --from {args.start} (--to is exclusive)")
    cfg = load_config(args.config, args.overrides)
    if not isinstance(cfg.source, FilesSourceConfig):
        raise QuarantineError(
            "replay writes the records for the files source to read, and source.kind is kinesis "
            "(see docs/operations.md, quarantine spike)"
        )
    quarantine_dataset(cfg.lake.path)  # a missing quarantine is a usage error, found without Spark
    selection = Selection(args.reason, args.start, args.end)
    spark = build_session(cfg.spark, cfg.app_name)
    try:
        result = replay_quarantined(spark, cfg, selection, dry_run=args.dry_run)
    finally:
        spark.stop()
    invalid = sum(result.still_invalid.values())
    by_reason = ", ".join(f"{r} {n}" for r, n in sorted(result.still_invalid.items(), key=lambda i: -i[1]))
    verb = "would send" if args.dry_run else "sent"
    sys.stdout.write(
        f"{result.selected} open quarantined records with reason {args.reason}"
        f" ({result.already_replayed} more were replayed before)\n"
        f"  {verb} {result.replayed}: {'the' if result.replayed else 'none the'} current contract accepts\n"
        f"  {invalid} stay quarantined{': ' + by_reason if by_reason else ''}\n"
    )
    if result.replay_id is not None:
        what = "would be" if args.dry_run else "is"
        sys.stdout.write(
            f"  replay {result.replay_id} {what} in {result.path}: the running app reads it within a "
            "trigger (else `mediapulse run --available-now`)\n"
        )
    return 0
