"""Pipeline health metrics: each micro-batch's figures, to a local JSON-lines file and to CloudWatch.

The figures of one batch of one query (:class:`BatchFigures`) come from the query's progress report
(:mod:`streaming.listener`) and, for the events query, from :class:`QuarantineReasons`, which counts the
batch's quarantined records by reason code inside its ``foreachBatch``. :class:`HealthMetrics` joins the
two and hands each batch's figures to every destination:

* :class:`JsonLinesMetrics`: one JSON object per line, appended to ``metrics.path`` (the default);
* :class:`CloudWatchMetrics`: ``PutMetricData`` into ``metrics.cloudwatch_namespace``, with the configured
  dimensions plus ``Query`` (and ``Reason`` for the quarantine counts).

Metrics are reports, not data: a destination that fails is logged and skipped, never stopping the stream,
and a replayed batch reports its figures again.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

if TYPE_CHECKING:
    from streaming.config import MetricsConfig

log = logging.getLogger(__name__)

# The figures a batch may carry: JSON key -> (CloudWatch metric name, unit).
FIGURES: dict[str, tuple[str, str]] = {
    "records_in": ("RecordsIn", "Count"),
    "valid": ("ValidRecords", "Count"),
    "quarantined": ("QuarantinedRecords", "Count"),
    "late_events": ("LateEvents", "Count"),
    "unknown_content": ("UnknownContentEvents", "Count"),
    "watermark_delay_s": ("WatermarkDelay", "Seconds"),
    "batch_duration_ms": ("BatchDuration", "Milliseconds"),
    "freshness_lag_s": ("FreshnessLag", "Seconds"),
    "millis_behind_latest": ("MillisBehindLatest", "Milliseconds"),
}
# Quarantined records per reason code: one metric, a `Reason` dimension per code.
REASON_METRIC = "QuarantinedByReason"
# PutMetricData takes at most this many data points per call.
CLOUDWATCH_BATCH = 1000


@dataclass(frozen=True)
class BatchFigures:
    """The health figures of one micro-batch of one query (a figure the query does not have is absent)."""

    query: str
    batch_id: int
    time: datetime  # when the batch started (UTC)
    figures: Mapping[str, float] = field(default_factory=dict)
    quarantined_by_reason: Mapping[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        line: dict[str, Any] = {
            "time": self.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "query": self.query,
            "batch_id": self.batch_id,
            **self.figures,
        }
        if self.quarantined_by_reason:
            line["quarantined_by_reason"] = dict(sorted(self.quarantined_by_reason.items()))
        return line


class MetricsDestination(Protocol):
    def put(self, batch: BatchFigures) -> None:
        """Record one batch's figures (may raise; :class:`HealthMetrics` logs and goes on)."""
        ...


@dataclass
class JsonLinesMetrics:
    """Appends one JSON object per batch to a local file (its folder is created)."""

    path: Path
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def put(self, batch: BatchFigures) -> None:
        line = json.dumps(batch.as_json(), separators=(",", ":")) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line)


@dataclass
class CloudWatchMetrics:
    """``PutMetricData`` of each batch's figures (boto3, created on first use)."""

    namespace: str
    dimensions: Mapping[str, str] = field(default_factory=dict)
    region: str | None = None
    endpoint_url: str | None = None
    client: Any = None

    def data(self, batch: BatchFigures) -> list[dict[str, Any]]:
        """The batch's figures as PutMetricData ``MetricData`` entries."""
        common = [{"Name": k, "Value": v} for k, v in self.dimensions.items()]
        common.append({"Name": "Query", "Value": batch.query})

        def point(name: str, value: float, unit: str, extra: Sequence[dict[str, str]] = ()) -> dict[str, Any]:
            return {
                "MetricName": name,
                "Dimensions": [*common, *extra],
                "Timestamp": batch.time,
                "Value": float(value),
                "Unit": unit,
            }

        points = [point(FIGURES[key][0], value, FIGURES[key][1]) for key, value in batch.figures.items()]
        points += [
            point(REASON_METRIC, count, "Count", [{"Name": "Reason", "Value": reason}])
            for reason, count in sorted(batch.quarantined_by_reason.items())
        ]
        return points

    def put(self, batch: BatchFigures) -> None:
        if self.client is None:
            import boto3

            self.client = boto3.client("cloudwatch", region_name=self.region, endpoint_url=self.endpoint_url)
        points = self.data(batch)
        for start in range(0, len(points), CLOUDWATCH_BATCH):
            chunk = points[start : start + CLOUDWATCH_BATCH]
            self.client.put_metric_data(Namespace=self.namespace, MetricData=chunk)


class HealthMetrics:
    """Joins a batch's progress figures with its quarantine counts and sends them to every destination."""

    def __init__(self, destinations: Sequence[MetricsDestination]) -> None:
        self.destinations = list(destinations)
        self._lock = threading.Lock()
        self._reasons: dict[tuple[str, int], dict[str, int]] = {}

    def add_reasons(self, query: str, batch_id: int, counts: Mapping[str, int]) -> None:
        """Quarantine counts by reason of a batch whose progress report is still to come."""
        with self._lock:
            self._reasons[(query, batch_id)] = dict(counts)

    def report(self, query: str, batch_id: int, time: datetime, figures: Mapping[str, float | None]) -> None:
        """Send one batch's figures (None values are left out) with its quarantine counts, if any."""
        with self._lock:
            reasons = self._reasons.pop((query, batch_id), {})
        batch = BatchFigures(
            query, batch_id, time, {k: v for k, v in figures.items() if v is not None}, reasons
        )
        for destination in self.destinations:
            try:
                destination.put(batch)
            except Exception as e:  # a report must never stop the stream (botocore, OSError, …)
                log.warning("metrics to %s failed for %s batch %d: %s", type(destination).__name__,
                            query, batch_id, e)  # fmt: skip


def open_metrics(cfg: MetricsConfig) -> HealthMetrics:
    """The destinations ``metrics`` configures: the JSON-lines file and/or CloudWatch."""
    destinations: list[MetricsDestination] = []
    if cfg.path:
        destinations.append(JsonLinesMetrics(Path(cfg.path)))
    if cfg.cloudwatch_namespace:
        destinations.append(
            CloudWatchMetrics(
                cfg.cloudwatch_namespace, dict(cfg.cloudwatch_dimensions), cfg.region, cfg.endpoint_url
            )
        )
    return HealthMetrics(destinations)


@dataclass(frozen=True)
class QuarantineReasons:
    """A sink of the events query: counts the batch's quarantined records by reason code (one small
    aggregation, one more scan of the batch, which that query does not persist) for :class:`HealthMetrics`;
    writes nothing."""

    name: str
    query: str
    metrics: HealthMetrics

    def write(self, batch: DataFrame, batch_id: int) -> None:
        counts = (
            batch.filter(F.size("reasons") > 0)
            .select(F.explode("reasons").alias("reason"))
            .groupBy("reason")
            .count()
            .collect()  # one row per reason code: a few dozen at most
        )
        self.metrics.add_reasons(self.query, batch_id, {row["reason"]: int(row["count"]) for row in counts})


def read_figures(
    path: Path, start: datetime | None = None, end: datetime | None = None
) -> list[BatchFigures]:
    """The batches :class:`JsonLinesMetrics` wrote to ``path`` that started in ``[start, end)`` (aware
    times; None: open), in file order. A line that is not a batch's figures (the half-written last line
    of a crash) is skipped with a warning; a missing file holds no batches."""
    batches: list[BatchFigures] = []
    skipped = 0
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            time = datetime.fromisoformat(record.pop("time").replace("Z", "+00:00"))
            batch = BatchFigures(
                query=str(record.pop("query")),
                batch_id=int(record.pop("batch_id")),
                time=time,
                quarantined_by_reason={k: int(v) for k, v in record.pop("quarantined_by_reason", {}).items()},
                figures={k: float(v) for k, v in record.items() if k in FIGURES},
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            skipped += 1
            continue
        if (start is None or batch.time >= start) and (end is None or batch.time < end):
            batches.append(batch)
    if skipped:
        log.warning("skipped %d line(s) of %s that are not batch figures", skipped, path)
    return batches
