"""Batch recomputation of engagement windows from the lake's event log, with the streaming transforms."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from sinks.base import write_all
from sinks.lake import LakeViewerRollups
from sinks.warehouse import open_warehouse
from sinks.warehouse.sink import WarehouseSink
from streaming.config import AppConfig
from streaming.dedup import deduplicate
from streaming.schema import EVENT_LOG_SCHEMA, EVENT_SCHEMA
from streaming.sources.content_dim import read_content_dimension
from streaming.transforms import engagement_from_events, stamp

log = logging.getLogger(__name__)


class BackfillError(ValueError):
    """The backfill range or its inputs are unusable."""


def align_range(start: datetime, end: datetime, window: timedelta) -> tuple[datetime, datetime]:
    """Widen ``[start, end)`` to whole windows (epoch-aligned, like Spark's tumbling windows)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise BackfillError("backfill times need a time zone (e.g. 2026-11-01T00:00:00Z)")
    if end <= start:
        raise BackfillError(f"--to ({end.isoformat()}) must be after --from ({start.isoformat()})")
    size = window.total_seconds()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    first = epoch + timedelta(seconds=((start - epoch).total_seconds() // size) * size)
    last = epoch + timedelta(seconds=-((-(end - epoch).total_seconds()) // size) * size)
    return first, last


def run_backfill(spark: SparkSession, cfg: AppConfig, start: datetime, end: datetime) -> int:
    """Recompute and upsert every window overlapping ``[start, end)``; returns the rows written."""
    first, last = align_range(start, end, cfg.engagement.window)
    path = f"{cfg.lake.path.rstrip('/')}/events"
    events = (
        spark.read.schema(EVENT_LOG_SCHEMA)
        .parquet(path)
        .filter(
            (F.col("event_date") >= F.lit(first.date()))
            & (F.col("event_date") <= F.lit(last.date()))
            & (F.col("event_time") >= F.lit(first))
            & (F.col("event_time") < F.lit(last))
        )
    )
    content = read_content_dimension(spark, cfg.dimensions)
    aggregates = engagement_from_events(
        deduplicate(events.select(*EVENT_SCHEMA.fieldNames()), "event_time", cfg.engagement.watermark),
        content,
        cfg.engagement.watermark,
        cfg.engagement.window,
        cfg.engagement.unique_viewers_lg_k,
    )
    frame = stamp(aggregates, 0)
    query = f"backfill-{first:%Y%m%dT%H%M%S}-{last:%Y%m%dT%H%M%S}-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
    # The days' unique viewers: the recomputed windows' sketches with the lake's for the rest of each day.
    rollups = LakeViewerRollups(f"{cfg.lake.path.rstrip('/')}/engagement", recomputed=(first, last))
    sink = WarehouseSink(
        "warehouse", query, cfg.staging_path, lambda: open_warehouse(cfg.warehouse), daily_viewers=rollups
    )
    rows = write_all([sink], frame, 0, count=True)
    log.info("backfill %s .. %s: %d window rows upserted", first.isoformat(), last.isoformat(), rows)
    return rows
