"""Stage 3: drop client retries and at-least-once redeliveries by event id."""

from __future__ import annotations

from datetime import timedelta

from pyspark.sql import DataFrame

from streaming.durations import spark_interval


def deduplicate(events: DataFrame, time_column: str, within: timedelta, key: str = "event_id") -> DataFrame:
    """Keep the first row per ``key`` seen within ``within`` of ``time_column``'s watermark.

    Rows already behind the watermark are dropped by Spark (and counted as late in the progress report).
    In batch mode (backfill) this is a plain ``dropDuplicates`` on ``key``.
    """
    if not events.isStreaming:
        return events.dropDuplicates([key])
    return events.withWatermark(time_column, spark_interval(within)).dropDuplicatesWithinWatermark([key])
