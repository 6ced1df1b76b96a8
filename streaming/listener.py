"""One concise line per micro-batch, running totals for the summary at exit, and each batch's health
figures for the metrics sink (:mod:`sinks.metrics`)."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pyspark.sql.streaming import StreamingQueryListener

if TYPE_CHECKING:
    from sinks.metrics import HealthMetrics

log = logging.getLogger("mediapulse.progress")


def _observed(progress: Any, name: str) -> dict[str, int]:
    metrics = getattr(progress, "observedMetrics", None) or {}
    row = metrics.get(name)
    return row.asDict() if row is not None else {}


def summarize_progress(progress: Any, scans: int = 1) -> dict[str, Any]:
    """The figures of one ``StreamingQueryProgress`` that the batch line and the summary use.

    ``scans``: how many times the query's batch function reads each batch (Spark counts input rows on
    every read, so a batch read by two sinks without caching reports twice its rows).
    """
    operators = list(progress.stateOperators or [])
    duration_ms = (progress.durationMs or {}).get("triggerExecution", 0)
    records = _observed(progress, "records")
    content = _observed(progress, "content")
    return {
        "query": progress.name or str(progress.id),
        "batch_id": progress.batchId,
        "input_rows": progress.numInputRows // scans,
        "rows_per_s": (progress.processedRowsPerSecond or 0.0) / scans,
        "duration_ms": duration_ms,
        "watermark": (progress.eventTime or {}).get("watermark"),
        "state_rows": sum(op.numRowsTotal for op in operators),
        "state_bytes": sum(op.memoryUsedBytes for op in operators),
        "late": sum(op.numRowsDroppedByWatermark for op in operators),
        "records_in": records.get("records_in"),
        "valid": records.get("valid"),
        "quarantined": records.get("quarantined"),
        "unknown_content": content.get("unknown_content_events"),
    }


def _instant(text: str | None) -> datetime | None:
    """A progress report's ISO 8601 time (``…Z``), or None when absent or the epoch (no watermark yet)."""
    if not text or text.startswith("1970-01-01T00:00:00"):
        return None
    return datetime.fromisoformat(text)


def _seconds(span: timedelta) -> float:
    return round(span.total_seconds(), 3)


def health_figures(progress: Any) -> dict[str, float | None]:
    """The health figures of one ``StreamingQueryProgress`` (None where the query has no such figure).

    Records in, valid and quarantined come from the ingest query's observed metrics; late events, unknown
    content, the watermark delay (batch start - watermark) and the freshness lag (batch end - newest event
    time of the batch) from the engagement query; ``MillisBehindLatest`` from a Kinesis source that
    reports it (the connector's ``maxMsBehindLatest``).
    """
    s = summarize_progress(progress)
    started = _instant(progress.timestamp)
    event_time = progress.eventTime or {}
    watermark, newest = _instant(event_time.get("watermark")), _instant(event_time.get("max"))
    engagement = s["query"] == "engagement"
    behind = [
        float(value)
        for source in progress.sources or []
        for key, value in (source.metrics or {}).items()
        if key in ("maxMsBehindLatest", "MillisBehindLatest") and value is not None
    ]
    return {
        "records_in": s["records_in"],
        "valid": s["valid"],
        "quarantined": s["quarantined"],
        "late_events": s["late"] if engagement else None,
        "unknown_content": s["unknown_content"],
        "watermark_delay_s": _seconds(started - watermark) if engagement and started and watermark else None,
        "batch_duration_ms": s["duration_ms"],
        "freshness_lag_s": (
            _seconds(started + timedelta(milliseconds=s["duration_ms"]) - newest)
            if engagement and started and newest
            else None
        ),
        "millis_behind_latest": max(behind) if behind else None,
    }


def format_line(s: dict[str, Any]) -> str:
    parts = [
        f"[{s['query']}] batch {s['batch_id']}:",
        f"in={s['input_rows']}",
        f"{s['rows_per_s']:.0f} rows/s",
        f"{s['duration_ms']} ms",
    ]
    if s["records_in"] is not None:
        parts.append(f"records={s['records_in']} valid={s['valid']} quarantined={s['quarantined']}")
    if s["watermark"] and not s["watermark"].startswith("1970-01-01T00:00:00"):
        parts.append(f"watermark={s['watermark']}")
    if s["state_rows"]:  # not counted when the RocksDB store is told not to track its rows
        parts.append(f"state={s['state_rows']}")
    if s["state_bytes"]:
        parts.append(f"state_mb={s['state_bytes'] / 2**20:.0f}")
    if s["query"] == "engagement":
        parts.append(f"late={s['late']}")
    if s["unknown_content"]:
        parts.append(f"unknown_content={s['unknown_content']}")
    return " ".join(parts)


class ProgressReporter(StreamingQueryListener):
    """Logs a line per micro-batch with data, accumulates per-query totals and reports each batch's
    health figures to ``metrics`` (when given).

    ``scans`` maps a query name to how many times its batch function reads each batch (default 1).
    """

    def __init__(self, metrics: HealthMetrics | None = None, scans: dict[str, int] | None = None) -> None:
        super().__init__()
        self.metrics = metrics
        self.scans = dict(scans or {})
        self._lock = threading.Lock()
        self.totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.durations: dict[str, list[int]] = defaultdict(list)
        self._seen: set[tuple[str, int]] = set()

    def reconcile(self, queries: list[Any]) -> None:
        """Count reports the asynchronous listener bus has not delivered yet (called at exit)."""
        for query in queries:
            for progress in query.recentProgress:
                self.record(progress)

    def onQueryStarted(self, event: Any) -> None:
        log.info("query %s started (run %s)", event.name, event.runId)

    def onQueryProgress(self, event: Any) -> None:
        self.record(event.progress)

    def record(self, progress: Any) -> None:
        """Count one progress report; a report already counted (same run and batch) is ignored."""
        summary = summarize_progress(progress, self.scans.get(progress.name or "", 1))
        with self._lock:
            key = (str(progress.runId), summary["batch_id"])
            if key in self._seen:
                return
            self._seen.add(key)
            totals = self.totals[summary["query"]]
            totals["batches"] += 1
            for key in ("input_rows", "records_in", "valid", "quarantined", "late", "unknown_content"):
                totals[key] += summary[key] or 0
            if summary["input_rows"]:
                self.durations[summary["query"]].append(summary["duration_ms"])
        if summary["input_rows"] or summary["late"]:
            log.info(format_line(summary))
        if log.isEnabledFor(logging.DEBUG):  # where the batch's time went, for `run -v`
            phases = " ".join(f"{k}={v}" for k, v in sorted((progress.durationMs or {}).items()))
            log.debug("[%s] batch %s phases (ms): %s", summary["query"], summary["batch_id"], phases)
        if self.metrics is not None:
            started = datetime.fromisoformat(progress.timestamp)
            self.metrics.report(summary["query"], summary["batch_id"], started, health_figures(progress))

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        if event.exception:
            log.error("query %s failed: %s", event.id, event.exception.splitlines()[0])

    def summary_lines(self) -> list[str]:
        with self._lock:
            lines = []
            for query, totals in sorted(self.totals.items()):
                text = f"{query}: {totals['batches']} batches, {totals['input_rows']} input rows"
                if query == "ingest":
                    text += (
                        f", records={totals['records_in']} valid={totals['valid']}"
                        f" quarantined={totals['quarantined']}"
                    )
                elif query == "engagement":
                    text += f", late={totals['late']}, unknown_content_events={totals['unknown_content']}"
                lines.append(text)
            return lines
