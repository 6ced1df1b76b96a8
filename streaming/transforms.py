"""The pipeline's pure transforms, in the order data passes them; the wiring lives in :mod:`streaming.query`.

Every function takes and returns a DataFrame (plus plain values): the streaming queries and the batch
backfill chain the same functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from streaming.aggregate import add_rates, aggregate_engagement
from streaming.dedup import deduplicate
from streaming.durations import spark_interval
from streaming.enrich import enrich_with_content
from streaming.parse import parse_events, quarantined, valid_events
from streaming.schema import EVENT_TYPES, PLATFORMS, RECORD_SCHEMA


def with_record_metrics(parsed: DataFrame) -> DataFrame:
    """Observe records in, valid and quarantined per micro-batch (reported by the listener)."""
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


def validated_records(
    raw: DataFrame,
    max_future_skew: timedelta,
    dedup_retention: timedelta,
    event_types: Sequence[str] = EVENT_TYPES,
    platforms: Sequence[str] = PLATFORMS,
) -> DataFrame:
    """Raw records -> validated records (:data:`RECORD_SCHEMA`), each record parsed once.

    Valid events are deduplicated by event id within ``dedup_retention`` of arrival time; invalid records
    are all kept, with their raw text and reasons (the raw text of a valid event is not kept: the event
    columns hold it).
    """
    # The arrival-time watermark is set on the raw records, before the parse: Spark's watermark operator
    # then ends the stage that stamps each record's arrival (a per-batch constant), so the parse's own
    # stage compiles to the same code every micro-batch and the JVM optimises it once. `arrival_time`,
    # the raw `ingest_time` renamed, keeps the watermark for the deduplication below.
    if raw.isStreaming:
        raw = raw.withWatermark("ingest_time", spark_interval(dedup_retention))
    parsed = parse_events(raw, max_future_skew, event_types, platforms).transform(with_record_metrics)
    valid = F.size("reasons") == 0
    keyed = parsed.select(
        *[F.when(~valid, F.col(name)).alias(name) if name == "raw" else name for name in parsed.columns],
        # Invalid records never collapse: each gets a key of its own. (A random id is seeded anew every
        # batch, so this small stage compiles every batch; the parse's stage, before it, does not.)
        F.when(valid, F.col("event_id")).otherwise(F.concat(F.lit("\u0000"), F.expr("uuid()"))).alias("_key"),
    )
    # By arrival: a record replayed from the quarantine keeps its original, older ingest_time.
    return deduplicate(keyed, "arrival_time", dedup_retention, key="_key").select(*RECORD_SCHEMA.fieldNames())


def engagement_from_events(
    events: DataFrame, content: DataFrame, watermark: timedelta, window: timedelta, viewers_lg_k: int
) -> DataFrame:
    """Valid events, one per event id -> enriched, windowed aggregates with rates (streaming or batch).

    The events must already be deduplicated: streaming, :func:`validated_records` dropped client retries
    by event id (a retry later than ``dedup.retention`` after the first copy is also behind the watermark
    unless event time stood still that long); in batch, the caller deduplicates. Streaming, the watermark
    closes windows and drops late events (counted as late), so no second event-id state is kept here.
    """
    timed = events.withWatermark("event_time", spark_interval(watermark)) if events.isStreaming else events
    return (
        enrich_with_content(timed, content)
        .transform(with_content_metrics)
        .transform(lambda df: aggregate_engagement(df, window, viewers_lg_k))
        .transform(add_rates)
    )


def event_log_rows(records: DataFrame) -> DataFrame:
    """Valid events of a batch of records, with the lake's partition columns (late events included)."""
    return (
        valid_events(records)
        .withColumn("event_date", F.to_date("event_time"))
        .withColumn("event_hour", F.hour("event_time"))
    )


def quarantine_rows(records: DataFrame) -> DataFrame:
    """Invalid records of a batch, with the lake's partition column."""
    return quarantined(records).withColumn("ingest_date", F.to_date("ingest_time"))


def engagement_rows(aggregates: DataFrame) -> DataFrame:
    return aggregates.withColumn("window_date", F.to_date("window_start"))


def stamp(batch: DataFrame, batch_id: int) -> DataFrame:
    """Add ``updated_at`` and ``batch_id`` to a batch of aggregates."""
    return batch.withColumn("updated_at", F.current_timestamp()).withColumn(
        "batch_id", F.lit(batch_id).cast("bigint")
    )
