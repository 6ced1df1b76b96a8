"""Query wiring: source -> parse/validate -> deduplicate -> enrich -> aggregate -> foreachBatch sinks.

Two streaming queries read the same source, each with its own checkpoint:

``ingest``
    every record, parsed once: valid events (deduplicated by event id within ``dedup.retention`` of
    arrival time) land in ``<lake>/events/`` partitioned by event date and hour - late events included -
    and invalid records in ``<lake>/quarantine/`` with their reasons. Its per-batch metrics give
    records in = valid + quarantined.
``engagement``
    valid events deduplicated within the event-time watermark, joined with the content dimension and
    aggregated into tumbling windows (update mode); one foreachBatch writes ``<lake>/engagement/`` and
    the warehouse. Events behind the watermark never change a closed window and are counted as late.

Two queries are needed because late events must reach the event log while the windowed state must
ignore them: a single query would drop them at its first watermark-bound operator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import DataStreamWriter, StreamingQuery

from sinks.base import Sink, write_all
from sinks.lake import LakeSink
from sinks.warehouse import Warehouse, open_warehouse
from sinks.warehouse.sink import WarehouseSink
from streaming.aggregate import add_rates, aggregate_engagement
from streaming.config import AppConfig, spark_interval
from streaming.dedup import deduplicate
from streaming.enrich import enrich_with_content
from streaming.parse import parse_events, quarantined, valid_events
from streaming.sources import read_source
from streaming.sources.content_dim import read_content_dimension

INGEST = "ingest"
ENGAGEMENT = "engagement"


def with_record_metrics(parsed: DataFrame) -> DataFrame:
    """Observe records in, valid and quarantined per micro-batch (reported by the listener).

    The observation also keeps the optimizer from copying the validation expressions into every
    later filter (measured: 20x slower without it, see docs/benchmarks.md).
    """
    invalid = F.size("reasons") > 0
    return parsed.observe(
        "records",
        F.count(F.lit(1)).alias("records_in"),
        F.count_if(~invalid).alias("valid"),
        F.count_if(invalid).alias("quarantined"),
    )


def with_content_metrics(enriched: DataFrame) -> DataFrame:
    """Observe how many (deduplicated) events had no row in the content dimension."""
    return enriched.observe(
        "content",
        F.count(F.lit(1)).alias("events"),
        F.count_if(~F.col("content_known")).alias("unknown_content_events"),
    )


def ingest_frame(raw: DataFrame, max_future_skew: timedelta, dedup_retention: timedelta) -> DataFrame:
    """Parsed records, valid ones deduplicated by event id in arrival time; invalid ones all kept."""
    parsed = with_record_metrics(parse_events(raw, max_future_skew))
    valid = F.size("reasons") == 0
    # Invalid records never collapse: each gets a key of its own.
    keyed = parsed.withColumn(
        "_dedup_key", F.when(valid, F.col("event_id")).otherwise(F.concat(F.lit("\u0000"), F.expr("uuid()")))
    )
    return deduplicate(keyed, "ingest_time", dedup_retention, key="_dedup_key").drop("_dedup_key")


def engagement_frame(
    raw: DataFrame,
    content: DataFrame,
    *,
    max_future_skew: timedelta,
    watermark: timedelta,
    window: timedelta,
    viewers_lg_k: int,
) -> DataFrame:
    """Valid, deduplicated, enriched events aggregated into windows, with rates."""
    return (
        parse_events(raw, max_future_skew)
        .transform(with_record_metrics)
        .transform(valid_events)
        .transform(lambda df: engagement_from_events(df, content, watermark, window, viewers_lg_k))
    )


def engagement_from_events(
    events: DataFrame, content: DataFrame, watermark: timedelta, window: timedelta, viewers_lg_k: int
) -> DataFrame:
    """Valid events -> deduplicated, enriched, windowed aggregates with rates (streaming or batch)."""
    return (
        deduplicate(events, "event_time", watermark)
        .transform(lambda df: enrich_with_content(df, content))
        .transform(with_content_metrics)
        .transform(lambda df: aggregate_engagement(df, window, viewers_lg_k))
        .transform(add_rates)
    )


def event_log_rows(batch: DataFrame) -> DataFrame:
    return (
        valid_events(batch)
        .withColumn("event_date", F.to_date("event_time"))
        .withColumn("event_hour", F.hour("event_time"))
    )


def quarantine_rows(batch: DataFrame) -> DataFrame:
    return quarantined(batch).withColumn("ingest_date", F.to_date("ingest_time"))


def engagement_rows(batch: DataFrame) -> DataFrame:
    return batch.withColumn("window_date", F.to_date("window_start"))


def ingest_sinks(cfg: AppConfig) -> list[Sink]:
    lake = cfg.lake.path.rstrip("/")
    return [
        LakeSink("events", f"{lake}/events", ("event_date", "event_hour"), event_log_rows),
        LakeSink("quarantine", f"{lake}/quarantine", ("ingest_date",), quarantine_rows),
    ]


def engagement_sinks(cfg: AppConfig, warehouse: Callable[[], Warehouse] | None = None) -> list[Sink]:
    lake = cfg.lake.path.rstrip("/")
    return [
        LakeSink("engagement", f"{lake}/engagement", ("window_date",), engagement_rows),
        WarehouseSink(
            "warehouse",
            ENGAGEMENT,
            cfg.staging_path,
            warehouse or (lambda: open_warehouse(cfg.warehouse)),
        ),
    ]


def stamp(batch: DataFrame, batch_id: int) -> DataFrame:
    """Add ``updated_at`` and ``batch_id`` to a batch of aggregates."""
    return batch.withColumn("updated_at", F.current_timestamp()).withColumn(
        "batch_id", F.lit(batch_id).cast("bigint")
    )


@dataclass(frozen=True)
class BatchWriter:
    """The foreachBatch function of a query: persist once, write every sink, unpersist."""

    sinks: tuple[Sink, ...]
    prepare: Callable[[DataFrame, int], DataFrame] | None = None

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        frame = self.prepare(batch, batch_id) if self.prepare else batch
        write_all(list(self.sinks), frame, batch_id)


def _writer(frame: DataFrame, name: str, cfg: AppConfig, available_now: bool) -> DataStreamWriter:
    writer = frame.writeStream.queryName(name).option(
        "checkpointLocation", f"{cfg.checkpoint.path.rstrip('/')}/{name}"
    )
    if available_now:
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=spark_interval(cfg.trigger.interval))


def start_pipeline(
    spark: SparkSession,
    cfg: AppConfig,
    *,
    available_now: bool = False,
    warehouse: Callable[[], Warehouse] | None = None,
) -> list[StreamingQuery]:
    """Start both queries; the caller waits on them (see :mod:`streaming.run`)."""
    checkpoint = cfg.checkpoint.path.rstrip("/")
    content = read_content_dimension(spark, cfg.dimensions)
    opener = warehouse or (lambda: open_warehouse(cfg.warehouse))
    with opener() as target:  # fail fast on an unreachable warehouse; create its tables if missing
        target.init()

    ingest = (
        _writer(
            ingest_frame(
                read_source(spark, cfg.source, f"{checkpoint}/{INGEST}"),
                cfg.validation.max_future_skew,
                cfg.dedup.retention,
            ),
            INGEST,
            cfg,
            available_now,
        )
        .outputMode("append")
        .foreachBatch(BatchWriter(tuple(ingest_sinks(cfg))))
    )
    engagement = (
        _writer(
            engagement_frame(
                read_source(spark, cfg.source, f"{checkpoint}/{ENGAGEMENT}"),
                content,
                max_future_skew=cfg.validation.max_future_skew,
                watermark=cfg.engagement.watermark,
                window=cfg.engagement.window,
                viewers_lg_k=cfg.engagement.unique_viewers_lg_k,
            ),
            ENGAGEMENT,
            cfg,
            available_now,
        )
        .outputMode("update")
        .foreachBatch(BatchWriter(tuple(engagement_sinks(cfg, opener)), prepare=stamp))
    )
    queries = [ingest.start()]
    try:
        queries.append(engagement.start())
    except Exception:
        queries[0].stop()
        raise
    return queries
