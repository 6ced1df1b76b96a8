"""Stage 5: event-time tumbling windows of engagement metrics per content, affiliate and platform."""

from __future__ import annotations

from datetime import timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from streaming.durations import spark_interval
from streaming.schema import ENGAGEMENT, WATCHED_EVENT_TYPES

GROUP_KEYS = ENGAGEMENT.names("group")
# What aggregate_engagement returns, in table order; add_rates and the batch stamp add the rest.
AGGREGATE_COLUMNS = ENGAGEMENT.names("window", "group", "attribute", "metric", "sketch")


def _count_of(event_type: str) -> Column:
    return F.count_if(F.col("event_type") == event_type)


def aggregate_engagement(events: DataFrame, window: timedelta, viewers_lg_k: int = 14) -> DataFrame:
    """Windowed metrics keyed by ``window_start, content_id, affiliate_id, platform``.

    ``unique_viewers`` is estimated from a DataSketches HLL sketch of ``user_id`` with ``2**viewers_lg_k``
    buckets (lg_k 14: about 0.8 % relative standard error; exact-ish for small groups, whose sketches
    stay small in state). The sketch itself is kept as ``viewers_sketch`` so windows can be merged later
    (``hll_union_agg``) without recounting.

    The caller sets the watermark (see :func:`streaming.dedup.deduplicate`); in streaming update mode
    each micro-batch emits the full current values of the groups it touched.
    """
    watched = F.col("event_type").isin(*WATCHED_EVENT_TYPES)
    # One expression per metric column of streaming.schema.ENGAGEMENT (unique_viewers is estimated below).
    metrics = {
        "impressions": _count_of("impression"),
        "clicks": _count_of("click"),
        "play_starts": _count_of("play_start"),
        "completions": _count_of("complete"),
        "watch_time_ms": F.coalesce(F.sum(F.when(watched, F.col("watch_ms"))), F.lit(0)),
    }
    return (
        events.groupBy(F.window("event_time", spark_interval(window)).alias("window"), *GROUP_KEYS)
        .agg(
            *(value.alias(name) for name, value in metrics.items()),
            F.hll_sketch_agg("user_id", viewers_lg_k).alias("viewers_sketch"),
            *(F.max(name).alias(name) for name in ENGAGEMENT.names("attribute")),
        )
        .withColumns(
            {
                "window_start": F.col("window.start"),
                "window_end": F.col("window.end"),
                "unique_viewers": F.hll_sketch_estimate("viewers_sketch"),
            }
        )
        .select(*AGGREGATE_COLUMNS)
    )


def add_rates(aggregates: DataFrame) -> DataFrame:
    """``ctr`` = clicks / impressions and ``completion_rate`` = completions / play_starts (null on 0)."""
    return aggregates.withColumn(
        "ctr", F.try_divide(F.col("clicks").cast("double"), F.nullif(F.col("impressions"), F.lit(0)))
    ).withColumn(
        "completion_rate",
        F.try_divide(F.col("completions").cast("double"), F.nullif(F.col("play_starts"), F.lit(0))),
    )
