"""Stage 3: drop client retries and at-least-once redeliveries by event id."""

from __future__ import annotations

from datetime import timedelta

from pyspark.sql import DataFrame

from streaming.durations import spark_interval

# Where Spark keeps a column's watermark delay (EventTimeWatermark.delayKey).
WATERMARK_DELAY_KEY = "spark.watermarkDelayMs"


def deduplicate(events: DataFrame, time_column: str, within: timedelta, key: str = "event_id") -> DataFrame:
    """Keep the first row per ``key`` seen within ``within`` of ``time_column``'s watermark (set here,
    unless the column already carries one).

    Rows already behind the watermark are dropped by Spark (and counted as late in the progress report).
    In batch mode (backfill) this is a plain ``dropDuplicates`` on ``key``.
    """
    if not events.isStreaming:
        return events.dropDuplicates([key])
    if not has_watermark(events, time_column):
        events = events.withWatermark(time_column, spark_interval(within))
    return events.dropDuplicatesWithinWatermark([key])


def has_watermark(frame: DataFrame, column: str) -> bool:
    """Whether ``column`` already carries an event-time watermark (set upstream, e.g. on raw records)."""
    return WATERMARK_DELAY_KEY in frame.schema[column].metadata
