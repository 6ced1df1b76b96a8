"""``mediapulse`` command line: the entry point wires config, session, queries and sinks.

Every command ends with one line on failure and an exit code: 0 done, 1 the work failed, 2 a usage or
configuration problem (bad arguments, bad config, missing inputs). Inputs that can be checked without
Spark are checked before the JVM starts.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pyspark.errors import PySparkException

from streaming.commands import add_config_arguments, exit_code
from streaming.config import AppConfig, ConfigError, load_config

log = logging.getLogger("mediapulse")

OVERVIEW = """\
Streaming engagement analytics: mediapulse reads engagement events (JSON files or a Kinesis stream),
validates and deduplicates them, and keeps per-content numbers in event-time windows (impressions,
clicks, plays, completions, watch time, unique viewers) in a Parquet lake and a warehouse (DuckDB,
PostgreSQL or Redshift), exactly once."""

FIRST_STEPS = """\
first steps:
  mediapulse simulate --out data/incoming   write sample traffic and a content dimension
  mediapulse run --available-now            process what is there, then exit
  mediapulse top                            print the top content from the warehouse

Configuration: config/local.yaml, MEDIAPULSE__SECTION__KEY variables, --set section.key=value
(see the README's configuration table). `mediapulse COMMAND --help` describes each command."""

FIRST_RUN_HINT = "run the pipeline first: `make run` (sample data), or `mediapulse run --available-now`"


def _app_version() -> str:
    try:
        return version("mediapulse")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _CommandParser(argparse.ArgumentParser):
    """A command's parser: ``-v/--verbose`` is accepted after the command name too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
        )


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-5s %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("py4j", "pyspark", "botocore", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _config(args: argparse.Namespace) -> AppConfig:
    return load_config(args.config, args.overrides)


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from e
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone (e.g. 2026-11-01T00:00:00Z)")
    return moment


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from e
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _missing_local(path: str) -> bool:
    """Whether ``path`` is on this machine (no URL scheme, or ``file:``) and does not exist."""
    parsed = urlparse(path)
    if parsed.scheme not in ("", "file"):
        return False  # s3://, hdfs://: checked by Spark's own file systems once the session is up
    return not Path(parsed.path if parsed.scheme else path).exists()


def _require_source(cfg: AppConfig) -> None:
    if cfg.source.kind == "files" and _missing_local(cfg.source.path):
        raise ConfigError(
            f"source.path {cfg.source.path!r} does not exist: write sample traffic there with "
            f"`mediapulse simulate --out {cfg.source.path}`, or point source.path at your event files"
        )


def _require_event_log(cfg: AppConfig) -> None:
    events = f"{cfg.lake.path.rstrip('/')}/events"
    if _missing_local(events):
        raise ConfigError(
            f"lake.path {cfg.lake.path!r} holds no event log ({events} does not exist): backfill "
            f"recomputes windows from it; {FIRST_RUN_HINT}"
        )


def _require_dimension(cfg: AppConfig) -> None:
    if _missing_local(cfg.dimensions.content_path):
        raise ConfigError(
            f"dimensions.content_path {cfg.dimensions.content_path!r} does not exist: `mediapulse simulate` "
            "writes a sample one, or point dimensions.content_path at your content dimension"
        )


def cmd_run(args: argparse.Namespace) -> int:
    from streaming.run import run_pipeline
    from streaming.session import build_session

    cfg = _config(args)
    _require_source(cfg)  # local inputs are checked before the JVM starts; remote ones by Spark
    _require_dimension(cfg)
    spark = build_session(cfg.spark, cfg.app_name)
    try:
        reporter = run_pipeline(spark, cfg, available_now=args.available_now)
    finally:
        spark.stop()
    for line in reporter.summary_lines():
        log.info("summary %s", line)
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from streaming.backfill import run_backfill
    from streaming.session import build_session

    if args.end <= args.start:
        raise argparse.ArgumentError(None, f"--to ({args.end.isoformat()}) must be after --from")
    cfg = _config(args)
    _require_event_log(cfg)
    _require_dimension(cfg)
    spark = build_session(cfg.spark, cfg.app_name)
    try:
        run_backfill(spark, cfg, args.start, args.end)
    finally:
        spark.stop()
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from sinks.warehouse import WarehouseMissingError, open_warehouse

    cfg = _config(args)
    try:
        with open_warehouse(cfg.warehouse, read_only=True) as warehouse:
            rows = warehouse.top(args.by, args.limit)
    except WarehouseMissingError as e:
        log.error("nothing to show: %s (warehouse.url %s); %s", e, cfg.warehouse.url, FIRST_RUN_HINT)
        return 2
    table = Table(title=f"Top content by {args.by}")
    for header in (
        "content",
        "title",
        "impr.",
        "clicks",
        "plays",
        "compl.",
        "watch (min)",
        "viewers*",
        "CTR",
        "completion",
    ):
        table.add_column(header, justify="left" if header in ("content", "title") else "right")
    for r in rows:
        table.add_row(
            r.content_id,
            r.title or "(unknown)",
            f"{r.impressions:,}",
            f"{r.clicks:,}",
            f"{r.play_starts:,}",
            f"{r.completions:,}",
            f"{r.watch_time_ms / 60000:,.1f}",
            f"{r.unique_viewers:,}",
            "-" if r.ctr is None else f"{r.ctr:.1%}",
            "-" if r.completion_rate is None else f"{r.completion_rate:.1%}",
        )
    console = Console(width=None if sys.stdout.isatty() else 140)
    console.print(table)
    console.print("* viewers: sum of per-window unique viewers (approximate, ±2 %)", style="dim")
    return 0


def cmd_docs_events(args: argparse.Namespace) -> int:
    from streaming.schema import events_markdown

    text = events_markdown()
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_docs_config(args: argparse.Namespace) -> int:
    from streaming.config_docs import config_table, with_config_table

    if args.update:
        args.update.write_text(with_config_table(args.update.read_text()))
    else:
        sys.stdout.write(config_table())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mediapulse",
        description=OVERVIEW,
        epilog=FIRST_STEPS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"mediapulse {_app_version()}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", title="commands", parser_class=_CommandParser
    )

    from devtools import simulate

    p = sub.add_parser("simulate", help="generate realistic engagement traffic and a content dimension")
    simulate.add_arguments(p)
    p.set_defaults(func=simulate.run)

    p = sub.add_parser("run", help="run the streaming pipeline (until stopped, or --available-now)")
    add_config_arguments(p)
    p.add_argument("--available-now", action="store_true", help="process what is there, then exit 0")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("backfill", help="recompute windows of a time range from the lake's event log")
    add_config_arguments(p)
    p.add_argument("--from", dest="start", type=_timestamp, required=True, help="e.g. 2026-11-01T00:00:00Z")
    p.add_argument("--to", dest="end", type=_timestamp, required=True, help="exclusive end time")
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("top", help="print top content from the warehouse")
    add_config_arguments(p)
    from sinks.warehouse.base import TOP_ORDERINGS

    p.add_argument(
        "--by", choices=sorted(TOP_ORDERINGS), default="impressions", help="order by (default: impressions)"
    )
    p.add_argument("--limit", type=_positive_int, default=10, metavar="N", help="rows to show (default: 10)")
    p.set_defaults(func=cmd_top)

    p = sub.add_parser("docs-events", help="write the event contract (docs/events.md) from the schema")
    p.add_argument("--out", type=Path, default=None, metavar="FILE", help="write here (default: stdout)")
    p.set_defaults(func=cmd_docs_events)

    p = sub.add_parser("docs-config", help="print the configuration table (README) from the config model")
    p.add_argument(
        "--update", type=Path, metavar="FILE", help="rewrite the table between its markers in FILE"
    )
    p.set_defaults(func=cmd_docs_config)

    for module in ("streaming.quarantine", "sinks.warehouse.admin", "bootstrap.cli"):
        try:
            registrar = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        registrar.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except argparse.ArgumentError as e:
        sys.stderr.write(f"mediapulse {args.command}: error: {e}\n")
        return exit_code(e)
    except ConfigError as e:
        log.error("%s", e)
        return exit_code(e)
    except (PySparkException, ValueError, RuntimeError, OSError) as e:
        if isinstance(e, PySparkException):
            log.error("Spark: %s", str(e).strip().splitlines()[0])
        else:
            log.error("%s: %s", type(e).__name__, e)
        if args.verbose:
            raise
        return exit_code(e)


if __name__ == "__main__":
    sys.exit(main())
