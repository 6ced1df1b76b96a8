"""Running the pipeline: start the queries, wait, stop gracefully after the current micro-batch."""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pyspark.errors import StreamingQueryException
from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from sinks.warehouse import Warehouse, open_warehouse
from streaming.checkpoints import ensure_layout
from streaming.config import AppConfig
from streaming.listener import ProgressReporter
from streaming.query import start_consumers, start_ingest
from streaming.storage import path_exists

log = logging.getLogger(__name__)


class PipelineError(RuntimeError):
    """A streaming query failed."""


_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception): .+")


def root_cause(text: str) -> str:
    """The most specific error line of a query failure (the Python error inside Py4J's wrapping)."""
    lines = [line.strip() for line in text.splitlines()]
    errors = [line for line in lines if _ERROR_LINE.match(line) and "Py4J" not in line]
    return errors[-1] if errors else (lines[0] if lines else "unknown error")


def marker_exists(spark: SparkSession, uri: str) -> bool:
    """Whether a stop marker exists, through Hadoop's file systems (local, s3://, hdfs://)."""
    return path_exists(spark, uri)


def stop_after_current_batch(queries: list[StreamingQuery], timeout_s: float) -> None:
    """Stop each query when it is between micro-batches (bounded wait); sinks stay consistent."""
    deadline = time.monotonic() + timeout_s
    for query in queries:
        while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
            time.sleep(0.2)
        if query.isActive:
            query.stop()


@contextmanager
def stop_signals(event: threading.Event) -> Iterator[None]:
    """SIGTERM and Ctrl-C set ``event`` instead of killing the driver mid-batch."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s: stopping after the current micro-batch", signal.Signals(signum).name)
        event.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _hit_admission_bound(queries: list[StreamingQuery], bound: int) -> bool:
    """Whether any query's last data batch was cut at the source's per-trigger bound."""
    for query in queries:
        data = [p for p in query.recentProgress if p.numInputRows]
        if data and data[-1].numInputRows >= bound:
            return True
    return False


def run_pipeline(
    spark: SparkSession,
    cfg: AppConfig,
    *,
    available_now: bool = False,
    stop: threading.Event | None = None,
    on_started: Callable[[list[StreamingQuery]], None] | None = None,
    warehouse: Callable[[], Warehouse] | None = None,
    max_rounds: int = 10_000,
) -> ProgressReporter:
    """Run until the queries finish (``available_now``), fail, or a stop is requested.

    Long-running, the ingest query and its two consumers run side by side. With ``available_now`` the
    ingest query first drains the source, then both consumers drain the records it wrote. The Python
    Kinesis source cannot split a backlog across an ``availableNow`` run on Spark 4.0, so it reads one
    bounded batch per run: the ingest run is repeated (from its checkpoint) until a run reads less
    than ``source.max_records_per_trigger``.
    """
    ensure_layout(spark, cfg.checkpoint.path)
    opener = warehouse or (lambda: open_warehouse(cfg.warehouse))
    with opener() as target:  # fail fast on an unreachable warehouse; create its tables if missing
        target.init()
    reporter = ProgressReporter()
    spark.streams.addListener(reporter)
    stop = stop or threading.Event()
    try:
        with stop_signals(stop):
            if not available_now:
                _wait(spark, cfg, reporter, stop, on_started, lambda: _start_all(spark, cfg, opener))
                return reporter
            for _ in range(max_rounds):
                queries = _wait(
                    spark, cfg, reporter, stop, None, lambda: [start_ingest(spark, cfg, available_now=True)]
                )
                repeat = (
                    cfg.source.kind == "kinesis"
                    and not stop.is_set()
                    and _hit_admission_bound(queries, cfg.source.max_records_per_trigger)
                )
                if not repeat:
                    break
                log.info("a batch hit source.max_records_per_trigger: reading the rest of the backlog")
            if not stop.is_set():
                _wait(
                    spark,
                    cfg,
                    reporter,
                    stop,
                    on_started,
                    lambda: start_consumers(spark, cfg, available_now=True, warehouse=opener),
                )
    finally:
        spark.streams.removeListener(reporter)
    return reporter


def _start_all(
    spark: SparkSession, cfg: AppConfig, warehouse: Callable[[], Warehouse]
) -> list[StreamingQuery]:
    ingest = start_ingest(spark, cfg)
    try:
        return [ingest, *start_consumers(spark, cfg, warehouse=warehouse)]
    except Exception:
        ingest.stop()
        raise


def _wait(
    spark: SparkSession,
    cfg: AppConfig,
    reporter: ProgressReporter,
    stop: threading.Event,
    on_started: Callable[[list[StreamingQuery]], None] | None,
    start: Callable[[], list[StreamingQuery]],
) -> list[StreamingQuery]:
    """Start queries, wait until they end, fail or a stop is requested; stop them all; raise a failure."""
    queries: list[StreamingQuery] = []
    try:
        queries = start()
        if on_started:
            on_started(queries)
        next_marker_check = 0.0
        while any(q.isActive for q in queries):
            if cfg.run.stop_marker and time.monotonic() >= next_marker_check:
                next_marker_check = time.monotonic() + cfg.run.stop_poll_interval.total_seconds()
                if marker_exists(spark, cfg.run.stop_marker):
                    log.info("stop marker %s found: stopping after the current batch", cfg.run.stop_marker)
                    stop.set()
            if stop.is_set():
                stop_after_current_batch(queries, cfg.run.stop_timeout.total_seconds())
                break
            for query in queries:
                if query.isActive:
                    try:
                        query.awaitTermination(0.5)
                    except StreamingQueryException:
                        break  # reported below, after every query is stopped
            if any(q.exception() for q in queries):
                break
    finally:
        failures = [q for q in queries if q.exception()]
        for query in queries:
            if query.isActive:
                query.stop()
        reporter.reconcile(queries)
    if failures:
        first = failures[0]
        raise PipelineError(
            f"query {first.name} failed: {root_cause(str(first.exception()))}"
        ) from first.exception()
    return queries
