"""``mediapulse`` command line: the entry point wires config, session, queries and sinks."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from pyspark.errors import PySparkException

from streaming.config import AppConfig, ConfigError, load_config

log = logging.getLogger("mediapulse")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-5s %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("py4j", "pyspark", "botocore", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="YAML config (default: config/local.yaml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set engagement.window='10 min' (repeatable)",
    )


def _config(args: argparse.Namespace) -> AppConfig:
    return load_config(args.config, args.overrides)


def _timestamp(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from e


def cmd_run(args: argparse.Namespace) -> int:
    from streaming.run import run_pipeline
    from streaming.session import build_session

    cfg = _config(args)
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

    cfg = _config(args)
    spark = build_session(cfg.spark, cfg.app_name)
    try:
        run_backfill(spark, cfg, args.start, args.end)
    finally:
        spark.stop()
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from sinks.warehouse import open_warehouse

    cfg = _config(args)
    with open_warehouse(cfg.warehouse) as warehouse:
        rows = warehouse.top(args.by, args.limit)
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
    parser = argparse.ArgumentParser(prog="mediapulse", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    from streaming import simulate

    p = sub.add_parser("simulate", help="generate realistic engagement traffic and a content dimension")
    simulate.add_arguments(p)
    p.set_defaults(func=simulate.run)

    p = sub.add_parser("run", help="run the streaming pipeline")
    _add_config_arguments(p)
    p.add_argument("--available-now", action="store_true", help="process what is there, then exit 0")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("backfill", help="recompute windows of a time range from the lake's event log")
    _add_config_arguments(p)
    p.add_argument("--from", dest="start", type=_timestamp, required=True, help="e.g. 2026-11-01T00:00:00Z")
    p.add_argument("--to", dest="end", type=_timestamp, required=True, help="exclusive end time")
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("top", help="print top content from the warehouse")
    _add_config_arguments(p)
    from sinks.warehouse.base import TOP_ORDERINGS

    p.add_argument("--by", choices=sorted(TOP_ORDERINGS), default="impressions")
    p.add_argument("--limit", type=int, default=10)
    p.set_defaults(func=cmd_top)

    p = sub.add_parser("docs-events", help="write the event contract (docs/events.md) from the schema")
    p.add_argument("--out", type=Path, default=None)
    p.set_defaults(func=cmd_docs_events)

    p = sub.add_parser("docs-config", help="print the configuration table (README) from the config model")
    p.add_argument(
        "--update", type=Path, metavar="FILE", help="rewrite the table between its markers in FILE"
    )
    p.set_defaults(func=cmd_docs_config)

    for module in ("sinks.warehouse.admin", "bootstrap.cli"):
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
    except ConfigError as e:
        log.error("%s", e)
        return 2
    except PySparkException as e:
        log.error("Spark: %s", str(e).strip().splitlines()[0])
        if args.verbose:
            raise
        return 1
    except (ValueError, RuntimeError, OSError) as e:
        log.error("%s: %s", type(e).__name__, e)
        if args.verbose:
            raise
        return 1


if __name__ == "__main__":
    sys.exit(main())
