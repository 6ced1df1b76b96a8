"""``mediapulse`` command line: the entry point wires config, session, queries and sinks.

Every command ends with one line on failure and an exit code: 0 done, 1 the work failed, 2 a usage or
configuration problem (bad arguments, bad config, missing inputs). Inputs that can be checked without
Spark are checked before the JVM starts.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
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
    if len(text) == 10 and text[4] == "-" and text[7] == "-":  # a date: that UTC day's start
        text += "T00:00:00+00:00"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from e
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone (e.g. 2026-11-01T00:00:00Z)")
    return moment


def _integer(text: str, minimum: int, rule: str) -> int:
    try:
        value = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from e
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{rule}: {text!r}")
    return value


def _count(text: str) -> int:
    return _integer(text, 0, "must be 0 or more")


def _positive_int(text: str) -> int:
    return _integer(text, 1, "must be at least 1")


def _span(text: str) -> timedelta:
    from streaming.durations import parse_duration

    try:
        span = parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30m, 6h, 2d)") from e
    if span <= timedelta(0):
        raise argparse.ArgumentTypeError(f"must be longer than 0: {text!r}")
    return span


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


def _slice(args: argparse.Namespace) -> Any:
    """The windows a report covers, from ``--since`` or ``--from``/``--to`` and the filters (naive UTC)."""
    from datetime import UTC

    from sinks.warehouse.analytics import Slice

    if args.since is not None and args.start is not None:
        raise argparse.ArgumentError(None, "give --since or --from, not both")
    start = args.start if args.since is None else datetime.now(UTC) - args.since
    end = args.end
    if start is not None and end is not None and end <= start:
        raise argparse.ArgumentError(None, f"--to ({end.isoformat()}) must be after the range's start")

    def naive(moment: datetime | None) -> datetime | None:
        return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None)

    return Slice(
        start=naive(start),
        end=naive(end),
        affiliate=args.affiliate,
        placement=args.placement,
        platform=args.platform,
        category=getattr(args, "category", None),
        final_only=getattr(args, "final_only", False),
    )


def _read_report(args: argparse.Namespace, read: Any) -> Any:
    """``read(warehouse)`` on the configured warehouse opened read-only; None (logged) when it is missing."""
    from sinks.warehouse import WarehouseMissingError, open_warehouse

    cfg = _config(args)
    try:
        with open_warehouse(cfg.warehouse, read_only=True) as warehouse:
            return read(warehouse)
    except WarehouseMissingError as e:
        log.error("nothing to show: %s (warehouse.url %s); %s", e, cfg.warehouse.url, FIRST_RUN_HINT)
        return None


def cmd_top(args: argparse.Namespace) -> int:
    from streaming.reports import TOP_TABLE, write_report

    where = _slice(args)
    report = _read_report(args, lambda wh: wh.top(where, args.by, args.limit, args.min_impressions))
    if report is None:
        return 2
    notes = [
        "viewers (day): distinct users of one whole UTC day, from the daily rollup (about ±2 %); shown only "
        "when the range is one UTC day (e.g. --from 2026-11-01 --to 2026-11-02): estimates never add up",
        "completion*: some completions belong to plays started before the range (completions > plays)",
        "final: every window of the row is behind the watermark (no event changes it); open: still filling",
    ]
    write_report(report, args.format, title=f"Top content by {args.by}", table=TOP_TABLE, notes=notes)
    return 0


def cmd_rank(args: argparse.Namespace) -> int:
    from streaming.reports import RANK_TABLE, write_report

    where = _slice(args)
    report = _read_report(args, lambda wh: wh.rank(where, args.by, args.limit, args.min_volume))
    if report is None:
        return 2
    slot = f"{args.affiliate} / {args.placement}" + (f" / {args.platform}" if args.platform else "")
    notes = [
        f"ranked by the lower bound of the 95 % Wilson interval of the {args.by.replace('_', ' ')}; "
        f"items with fewer than {args.min_volume} trials are listed last as low traffic",
    ]
    title = f"Content for {slot} by {args.by}"
    write_report(report, args.format, title=title, table=RANK_TABLE, notes=notes)
    return 0


def _writable_file(path: Path, what: str) -> Path:
    """``path``, once its folder exists and it can be written there; else a usage error naming ``what``."""
    if path.is_dir():
        raise argparse.ArgumentError(None, f"{what} {path} is a folder: name a file in it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise argparse.ArgumentError(None, f"{what} {path}: cannot create its folder ({e.strerror})") from e
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentError(None, f"{what} {path} is not writable")
    return path


def _writable_folder(path: Path, what: str) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise argparse.ArgumentError(None, f"{what} {path}: cannot create the folder ({e.strerror})") from e
    if not os.access(path, os.W_OK):
        raise argparse.ArgumentError(None, f"{what} {path} is not writable")
    return path


def cmd_report(args: argparse.Namespace) -> int:
    from datetime import UTC

    from sinks.metrics import read_figures
    from streaming import html_report

    if args.since is not None and args.start is not None:
        raise argparse.ArgumentError(None, "give --since or --from, not both")
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise argparse.ArgumentError(None, f"--to ({args.end.isoformat()}) must be after --from")
    out = _writable_file(args.out, "--out")
    png = None if args.png is None else _writable_folder(args.png, "--png")
    cfg = _config(args)
    health = read_figures(Path(cfg.metrics.path)) if cfg.metrics.path else []
    now = datetime.now(UTC)
    data = _read_report(
        args,
        lambda warehouse: html_report.read_data(
            warehouse,
            (args.since, args.start, args.end),
            health,
            source=f"warehouse {cfg.warehouse.url}",
            metrics_path=cfg.metrics.path,
            now=now,
        ),
    )
    if data is None:
        return 2
    charts = html_report.all_charts(data)
    html_report.write_html(out, html_report.render_html(data, charts, html_report.javascript_bundle()))
    drawn = sum(chart.spec is not None for chart in charts)
    log.info("report of %s: %d of %d charts have data", data.ranges.note, drawn, len(charts))
    if png is not None:
        images = html_report.write_pngs(charts, png)
        log.info("%d PNG images in %s", len(images), png)
    sys.stdout.write(f"{out.resolve()}\n")
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

    from sinks.warehouse.analytics import RANKINGS, TOP_ORDERINGS
    from streaming.reports import FORMATS
    from streaming.schema import PLATFORMS

    def report_arguments(p: argparse.ArgumentParser, required: bool) -> None:
        add_config_arguments(p)
        p.add_argument("--since", type=_span, metavar="SPAN", help="windows of the last SPAN (30m, 6h, 2d)")
        p.add_argument("--from", dest="start", type=_timestamp, help="windows from (2026-11-01 or ISO 8601)")
        p.add_argument("--to", dest="end", type=_timestamp, help="windows before (exclusive)")
        p.add_argument("--affiliate", required=required, help="one affiliate only")
        p.add_argument("--placement", required=required, help="one placement (slot) only; '(none)': none")
        p.add_argument("--platform", choices=PLATFORMS, help="one platform only")
        p.add_argument("--format", choices=FORMATS, default="table", help="output (default: table)")

    p = sub.add_parser("top", help="print top content from the warehouse")
    report_arguments(p, required=False)
    p.add_argument("--category", help="content of one category only")
    p.add_argument(
        "--by", choices=list(TOP_ORDERINGS), default="impressions", help="order by (default: impressions)"
    )
    p.add_argument("--min-impressions", type=_count, default=0, metavar="N", help="skip content with fewer")
    p.add_argument("--final-only", action="store_true", help="final windows only (behind the watermark)")
    p.add_argument("--limit", type=_positive_int, default=10, metavar="N", help="rows to show (default: 10)")
    p.set_defaults(func=cmd_top)

    p = sub.add_parser(
        "rank", help="rank content for one affiliate and placement by a Wilson lower bound, with intervals"
    )
    report_arguments(p, required=True)
    p.add_argument("--by", choices=list(RANKINGS), default="ctr", help="the rate to rank by (default: ctr)")
    p.add_argument(
        "--min-volume",
        type=_count,
        default=100,
        metavar="N",
        help="trials (impressions; plays for completion) needed to be judged (default: 100)",
    )
    p.add_argument("--limit", type=_positive_int, default=20, metavar="N", help="rows to show (default: 20)")
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser(
        "report", help="write an HTML report with charts (opens offline): the warehouse views and health"
    )
    add_config_arguments(p)
    p.add_argument(
        "--since", type=_span, metavar="SPAN",
        help="windows and batches of the last SPAN (30m, 6h, 2d); default: the last 24 h of data",
    )  # fmt: skip
    p.add_argument("--from", dest="start", type=_timestamp, help="from (2026-11-01 or ISO 8601)")
    p.add_argument("--to", dest="end", type=_timestamp, help="before (exclusive)")
    p.add_argument(
        "--out", type=Path, default=Path("report.html"), metavar="FILE", help="HTML file (report.html)"
    )
    p.add_argument("--png", type=Path, metavar="DIR", help="also write each chart as a PNG image into DIR")
    p.set_defaults(func=cmd_report)

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
