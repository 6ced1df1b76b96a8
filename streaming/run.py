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
from streaming.checkpoints import ensure_layout, purge_consumed_records
from streaming.config import AppConfig
from streaming.listener import ProgressReporter
from streaming.query import start_consumers, start_ingest
from streaming.storage import path_exists

log = logging.getLogger(__name__)


# How often a long-running app deletes validated records both readers have committed.
PURGE_INTERVAL_S = 60.0


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
    """Run until the source is drained (``available_now``), a query fails, or a stop is requested.

    The ingest query and its two consumers run side by side. With ``available_now`` the ingest query
    reads what the source holds and ends; the consumers then finish the records it wrote, and stop.
    The Python Kinesis source cannot split a backlog across an ``availableNow`` run on Spark 4.0, so it
    reads one bounded batch per run: the ingest run is repeated (from its checkpoint) until a run reads
    less than ``source.max_records_per_trigger``.
    """
    checkpoint_id = ensure_layout(spark, cfg.checkpoint.path)
    opener = warehouse or (lambda: open_warehouse(cfg.warehouse))
    with opener() as target:  # fail fast on an unreachable warehouse; create its tables if missing
        target.init()
    reporter = ProgressReporter()
    spark.streams.addListener(reporter)
    stop = stop or threading.Event()
    run = _Run(spark, cfg, reporter, stop)
    try:
        with stop_signals(stop):
            consumers = run.start(lambda: start_consumers(spark, cfg, checkpoint_id, warehouse=opener))
            ingest = run.start(lambda: [start_ingest(spark, cfg, available_now=available_now)])
            if on_started:
                on_started([*ingest, *consumers])
            for _ in range(max_rounds):
                run.wait(until=lambda: not ingest[0].isActive)
                repeat = (
                    available_now
                    and cfg.source.kind == "kinesis"
                    and not stop.is_set()
                    and _hit_admission_bound(ingest, cfg.source.max_records_per_trigger)
                )
                if not repeat:
                    break
                log.info("a batch hit source.max_records_per_trigger: reading the rest of the backlog")
                ingest[:] = run.start(lambda: [start_ingest(spark, cfg, available_now=True)])
            if available_now and not stop.is_set():
                run.drain(consumers)
    finally:
        try:
            run.stop_all()
        finally:
            spark.streams.removeListener(reporter)
    return reporter


class _Run:
    """The queries of one run: started, watched for failures, stop requests and the stop marker."""

    def __init__(
        self, spark: SparkSession, cfg: AppConfig, reporter: ProgressReporter, stop: threading.Event
    ) -> None:
        self.spark, self.cfg, self.reporter, self.stop = spark, cfg, reporter, stop
        self.queries: list[StreamingQuery] = []
        self._next_marker_check = 0.0
        self._next_purge = time.monotonic() + PURGE_INTERVAL_S

    def start(self, starter: Callable[[], list[StreamingQuery]]) -> list[StreamingQuery]:
        started = starter()
        self.queries.extend(started)
        return started

    def wait(self, until: Callable[[], bool]) -> None:
        """Wait until ``until()``, a failure (raised) or a stop request (queries stopped between batches)."""
        while not until() and not self._stop_requested():
            self._purge_records()
            for query in self.queries:
                if query.isActive:
                    try:
                        query.awaitTermination(0.5)
                    except StreamingQueryException:
                        break
            self._raise_failure()
        self._raise_failure()

    def drain(self, consumers: list[StreamingQuery]) -> None:
        """Let each consumer process everything its source holds now, then stop it."""
        for query in consumers:
            try:
                query.processAllAvailable()
            except StreamingQueryException:
                self._raise_failure()
            query.stop()
        self._raise_failure()

    def stop_all(self) -> None:
        if self.stop.is_set():
            stop_after_current_batch(self.queries, self.cfg.run.stop_timeout.total_seconds())
        for query in self.queries:
            if query.isActive:
                query.stop()
        self.reporter.reconcile(self.queries)
        self._next_purge = 0.0
        self._purge_records()

    def _purge_records(self) -> None:
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + PURGE_INTERVAL_S
        removed = purge_consumed_records(
            self.spark, self.cfg.checkpoint.path, self.cfg.checkpoint.records_retention
        )
        if removed:
            log.info("removed %d record files both readers committed", len(removed))

    def _stop_requested(self) -> bool:
        marker = self.cfg.run.stop_marker
        if marker and time.monotonic() >= self._next_marker_check:
            self._next_marker_check = time.monotonic() + self.cfg.run.stop_poll_interval.total_seconds()
            if marker_exists(self.spark, marker):
                log.info("stop marker %s found: stopping after the current batch", marker)
                self.stop.set()
        return self.stop.is_set()

    def _raise_failure(self) -> None:
        failed = next((q for q in self.queries if q.exception()), None)
        if failed is not None:
            raise PipelineError(
                f"query {failed.name} failed: {root_cause(str(failed.exception()))}"
            ) from failed.exception()
