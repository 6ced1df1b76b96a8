"""Running the pipeline: start the queries, wait, stop gracefully after the current micro-batch."""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pyspark.errors import StreamingQueryException
from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from sinks.base import PermanentSinkError
from sinks.metrics import open_metrics
from sinks.warehouse import Warehouse, open_warehouse
from streaming.checkpoints import (
    ENGAGEMENT,
    EVENTS,
    INGEST,
    RECORD_READERS,
    VIEWERS,
    ensure_layout,
    purge_consumed_records,
)
from streaming.config import AppConfig
from streaming.listener import ProgressReporter
from streaming.query import events_sinks, start_engagement, start_events, start_ingest, start_viewers
from streaming.sources.kinesis.backlog import behind_latest
from streaming.storage import path_exists

log = logging.getLogger(__name__)


# How often a long-running app deletes validated records every reader has committed.
PURGE_INTERVAL_S = 60.0
# Longest wait before restarting a failed query.
MAX_BACKOFF_S = 300.0


class PipelineError(RuntimeError):
    """A streaming query failed."""


_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception): .+")


def root_cause(text: str) -> str:
    """The most specific error line of a query failure (the Python error inside Py4J's wrapping)."""
    lines = [line.strip() for line in text.splitlines()]
    errors = [line for line in lines if _ERROR_LINE.match(line) and "Py4J" not in line]
    return errors[-1] if errors else (lines[0] if lines else "unknown error")


# A PermanentSinkError's message in a query failure: from its traceback line to the blank line after it.
_PERMANENT = re.compile(
    rf"^(?:[\w.]+\.)?{PermanentSinkError.__name__}: (.+?)(?:\n\s*\n|\Z)", re.MULTILINE | re.DOTALL
)


def permanent_failure(text: str) -> str | None:
    """The message of a sink failure that a replay would repeat (:class:`sinks.base.PermanentSinkError`)
    in a query failure's text, or None."""
    found = _PERMANENT.findall(text)
    return found[-1].strip() if found else None


def marker_exists(spark: SparkSession, uri: str) -> bool:
    """Whether a stop marker exists, through Hadoop's file systems (local, s3://, hdfs://)."""
    return path_exists(spark, uri)


def stop_after_current_batch(queries: list[StreamingQuery], timeout_s: float) -> None:
    """Stop each query once no batch of data is running in it (bounded wait), so a batch's work is not
    thrown away; stopping mid-batch would still be exact (the batch is replayed into idempotent sinks).

    A trigger that is only asking the source for new offsets is not waited for: a source at its tip
    (a Kinesis shard read at its quota) can spend every trigger there, and a query stopped then has
    nothing to replay. Spark marks that time ``isDataAvailable: false`` (from the last trigger that
    found no new data) while ``isTriggerActive`` stays true.
    """
    deadline = time.monotonic() + timeout_s
    for query in queries:
        while query.isActive and time.monotonic() < deadline:
            status = query.status
            if not (status.get("isTriggerActive") and status.get("isDataAvailable")):
                break
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
    """Run until the source is drained (``available_now``), a stop is requested, or a query keeps failing.

    Long-running, the ingest query and its three consumers run side by side. With ``available_now`` the
    ingest query first reads what the source holds; then each consumer reads all the records it wrote
    in one run, so event time advances across the whole backlog at once and no record of a slower shard
    or file falls behind the watermark. A failed query is restarted from its checkpoint with backoff,
    at most ``run.max_restarts_per_hour`` times in any hour. The Python Kinesis source cannot split a
    backlog across an ``availableNow`` run on Spark 4.0, so it reads one bounded batch per run: the
    ingest run is repeated (from its checkpoint) while a shard is behind (see
    ``streaming.sources.kinesis.backlog``).
    """
    checkpoint_id = ensure_layout(spark, cfg.checkpoint.path)
    opener = warehouse or (lambda: open_warehouse(cfg.warehouse))
    with opener() as target:  # fail fast on an unreachable warehouse; create its tables if missing
        target.init()
    metrics = open_metrics(cfg.metrics)
    # Each sink of the events query reads its batch (not cached): Spark counts the rows once per read.
    reporter = ProgressReporter(metrics, scans={EVENTS: len(events_sinks(cfg, checkpoint_id, metrics))})
    spark.streams.addListener(reporter)
    stop = stop or threading.Event()
    run = _Run(spark, cfg, reporter, stop)

    def start_consumers() -> None:
        once = available_now
        run.start(
            EVENTS, lambda: start_events(spark, cfg, checkpoint_id, available_now=once, metrics=metrics)
        )
        run.start(
            ENGAGEMENT,
            lambda: start_engagement(spark, cfg, checkpoint_id, available_now=once, warehouse=opener),
        )
        run.start(
            VIEWERS, lambda: start_viewers(spark, cfg, checkpoint_id, available_now=once, warehouse=opener)
        )

    try:
        with stop_signals(stop):
            if not available_now:
                start_consumers()
            run.start(INGEST, lambda: start_ingest(spark, cfg, available_now=available_now))
            if on_started and not available_now:
                on_started([run.queries[name] for name in (INGEST, *RECORD_READERS)])
            for _ in range(max_rounds):
                run.wait(until=lambda: not run.queries[INGEST].isActive)
                repeat = (
                    available_now
                    and cfg.source.kind == "kinesis"
                    and not stop.is_set()
                    and behind_latest(cfg.source, run.queries[INGEST])
                )
                if not repeat:
                    break
                log.info("a Kinesis shard is behind: reading the rest of the backlog")
                run.start(INGEST, lambda: start_ingest(spark, cfg, available_now=True))
            if available_now and not stop.is_set():
                start_consumers()
                if on_started:
                    on_started([run.queries[name] for name in (INGEST, *RECORD_READERS)])
                run.wait(until=lambda: not any(run.queries[q].isActive for q in RECORD_READERS))
    finally:
        try:
            run.stop_all()
        finally:
            spark.streams.removeListener(reporter)
    return reporter


class _Run:
    """The queries of one run: started, watched, restarted after a failure, stopped between batches."""

    def __init__(
        self, spark: SparkSession, cfg: AppConfig, reporter: ProgressReporter, stop: threading.Event
    ) -> None:
        self.spark, self.cfg, self.reporter, self.stop = spark, cfg, reporter, stop
        self.queries: dict[str, StreamingQuery] = {}
        self._starters: dict[str, Callable[[], StreamingQuery]] = {}
        self._finished: list[StreamingQuery] = []
        self._restarts: deque[float] = deque()
        self._next_marker_check = 0.0
        self._next_purge = time.monotonic() + PURGE_INTERVAL_S

    def start(self, name: str, starter: Callable[[], StreamingQuery]) -> StreamingQuery:
        if name in self.queries:
            self._finished.append(self.queries[name])
        self._starters[name] = starter
        self.queries[name] = starter()
        return self.queries[name]

    def wait(self, until: Callable[[], bool]) -> None:
        """Wait until ``until()`` or a stop request; failed queries are restarted (or the failure raised)."""
        while True:
            self._recover()
            if until() or self._stop_requested():
                return
            self._purge_records()
            for query in list(self.queries.values()):
                if query.isActive:
                    try:
                        query.awaitTermination(0.5)
                    except StreamingQueryException:
                        break

    def stop_all(self) -> None:
        queries = list(self.queries.values())
        if self.stop.is_set():
            stop_after_current_batch(queries, self.cfg.run.stop_timeout.total_seconds())
        for query in queries:
            if query.isActive:
                query.stop()
        self.reporter.reconcile([*self._finished, *queries])
        self._next_purge = 0.0
        self._purge_records()

    def _recover(self) -> None:
        """Restart each failed query from its checkpoint, within the restart budget; else raise."""
        for name, query in list(self.queries.items()):
            error = query.exception()
            if error is None:
                continue
            permanent = permanent_failure(str(error))
            if permanent is not None:  # a restart would replay the batch into the same failure
                raise PipelineError(f"query {name} stopped, not restarted: {permanent}") from error
            cause = root_cause(str(error))
            now = time.monotonic()
            while self._restarts and now - self._restarts[0] > 3600:
                self._restarts.popleft()
            budget = self.cfg.run.max_restarts_per_hour
            if len(self._restarts) >= budget:
                raise PipelineError(
                    f"query {name} failed: {cause} ({len(self._restarts)} restarts in the last hour, "
                    f"run.max_restarts_per_hour is {budget})"
                ) from error
            self._restarts.append(now)
            delay = min(
                self.cfg.run.restart_backoff.total_seconds() * 2 ** (len(self._restarts) - 1), MAX_BACKOFF_S
            )
            log.warning(
                "query %s failed: %s; restarting it from its checkpoint in %.0f s (restart %d of %d an hour)",
                name, cause, delay, len(self._restarts), budget,
            )  # fmt: skip
            if self.stop.wait(delay):
                raise PipelineError(f"query {name} failed: {cause} (stopped before its restart)") from error
            self.start(name, self._starters[name])

    def _purge_records(self) -> None:
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + PURGE_INTERVAL_S
        removed = purge_consumed_records(
            self.spark, self.cfg.checkpoint.path, self.cfg.checkpoint.records_retention
        )
        if removed:
            log.info("removed %d record files every reader committed", len(removed))

    def _stop_requested(self) -> bool:
        marker = self.cfg.run.stop_marker
        if marker and time.monotonic() >= self._next_marker_check:
            self._next_marker_check = time.monotonic() + self.cfg.run.stop_poll_interval.total_seconds()
            if marker_exists(self.spark, marker):
                log.info("stop marker %s found: stopping after the current batch", marker)
                self.stop.set()
        return self.stop.is_set()
