"""Stage 5: event-time tumbling windows of engagement metrics per content, affiliate, placement and
platform, and the unique-viewer rollups merged from their sketches."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from streaming.durations import spark_interval
from streaming.schema import ALL, DAILY_VIEWERS, ENGAGEMENT, NO_PLACEMENT, WATCHED_EVENT_TYPES

GROUP_KEYS = ENGAGEMENT.names("group")
# What aggregate_engagement returns, in table order; add_rates and the batch stamp add the rest.
AGGREGATE_COLUMNS = ENGAGEMENT.names("window", "group", "attribute", "metric", "sketch", "latest")
# The key columns a daily rollup rolls up (each subset of them is one level of the rollup).
ROLLUP_KEYS = DAILY_VIEWERS.names("group")
ROLLUP_LEVELS: tuple[tuple[str, ...], ...] = tuple(
    level for size in range(len(ROLLUP_KEYS) + 1) for level in itertools.combinations(ROLLUP_KEYS, size)
)


def _count_of(event_type: str) -> Column:
    return F.count_if(F.col("event_type") == event_type)


def placement_key() -> Column:
    """An event's placement as a key: absent, null or empty is :data:`NO_PLACEMENT`, never null."""
    return F.coalesce(F.nullif(F.col("placement"), F.lit("")), F.lit(NO_PLACEMENT))


def aggregate_engagement(events: DataFrame, window: timedelta, viewers_lg_k: int = 14) -> DataFrame:
    """Windowed metrics keyed by ``window_start, content_id, affiliate_id, placement, platform``.

    ``unique_viewers`` is estimated from a DataSketches HLL sketch of ``user_id`` with ``2**viewers_lg_k``
    buckets (lg_k 14: about 0.8 % relative standard error; exact-ish for small groups, whose sketches
    stay small in state). The sketch itself is kept as ``viewers_sketch`` so windows can be merged later
    (``hll_union_agg``) without recounting. ``last_event_time`` is the newest event time of the window:
    the batch's watermark is derived from it.

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
    keys = {"placement": placement_key()}
    return (
        events.groupBy(
            F.window("event_time", spark_interval(window)).alias("window"),
            *(keys.get(name, F.col(name)).alias(name) for name in GROUP_KEYS),
        )
        .agg(
            *(value.alias(name) for name, value in metrics.items()),
            F.hll_sketch_agg("user_id", viewers_lg_k).alias("viewers_sketch"),
            F.max("event_time").alias("last_event_time"),
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


def _ratio(numerator: str, denominator: str) -> Column:
    return F.try_divide(F.col(numerator).cast("double"), F.nullif(F.col(denominator), F.lit(0)))


def add_rates(aggregates: DataFrame) -> DataFrame:
    """``ctr`` = clicks / impressions, ``play_rate`` = play_starts / impressions and ``completion_rate`` =
    completions / play_starts (null on 0)."""
    return aggregates.withColumns(
        {
            "ctr": _ratio("clicks", "impressions"),
            "play_rate": _ratio("play_starts", "impressions"),
            "completion_rate": _ratio("completions", "play_starts"),
        }
    )


# ---------------------------------------------------------------------------------- unique viewers


def _levels(rows: DataFrame, keys: tuple[str, ...], *carried: str) -> DataFrame:
    """Each row once per rollup level: the level's keys kept, every other key :data:`ALL`."""
    levels = F.array(
        *(
            F.struct(
                *((F.col(k) if k in level or k not in ROLLUP_KEYS else F.lit(ALL)).alias(k) for k in keys),
                *(F.col(c).alias(c) for c in carried),
            )
            for level in ROLLUP_LEVELS
        )
    )
    return rows.select(F.explode(levels).alias("level")).select("level.*")


def daily_unique_viewers(sketches: DataFrame, touched: DataFrame | None = None) -> DataFrame:
    """Rows of :data:`streaming.schema.DAILY_VIEWERS` (without the batch columns) from window sketches.

    ``sketches`` holds ``window_start``, the group keys and ``viewers_sketch`` of every window of the days
    to roll up; it may hold several versions of a window (each update-mode batch writes one): a union of
    HLL sketches is idempotent, so an older version adds nothing to a newer one. With ``touched`` (rows
    with ``window_start`` and the group keys), only the rollup rows those rows fall in are returned.
    """
    day = F.date_trunc("day", F.col("window_start")).alias("day")
    keys = ("day", *ROLLUP_KEYS)
    rolled = (
        _levels(sketches.select(day, *ROLLUP_KEYS, "viewers_sketch"), keys, "viewers_sketch")
        .groupBy(*keys)
        .agg(F.hll_union_agg("viewers_sketch").alias("sketch"))
    )
    if touched is not None:
        affected = _levels(touched.select(day, *ROLLUP_KEYS), keys).distinct()
        rolled = rolled.join(affected, on=list(keys), how="left_semi")
    return rolled.select(*keys, F.hll_sketch_estimate("sketch").alias("unique_viewers"))


def unique_viewers_between(
    sketches: DataFrame, start: datetime, end: datetime, by: tuple[str, ...] = ("content_id",)
) -> DataFrame:
    """Distinct viewers per ``by`` over the windows starting in ``[start, end)``, merged from their sketches
    (any number of versions per window): the answer for any range, where no rollup fits."""
    unknown = sorted(set(by) - set(GROUP_KEYS))
    if unknown:
        raise ValueError(f"cannot group unique viewers by {', '.join(unknown)}: use {', '.join(GROUP_KEYS)}")
    return (
        sketches.filter((F.col("window_start") >= F.lit(start)) & (F.col("window_start") < F.lit(end)))
        .groupBy(*by)
        .agg(F.hll_sketch_estimate(F.hll_union_agg("viewers_sketch")).alias("unique_viewers"))
    )


def daily_viewers_from_events(events: DataFrame, viewers_lg_k: int = 14) -> DataFrame:
    """Valid events -> rows of :data:`streaming.schema.DAILY_VIEWERS` (without the batch columns).

    Each event counts once at every rollup level (its own keys, or :data:`ALL` in their place) in an HLL
    sketch of ``user_id`` per UTC day. Streaming (update mode, the caller sets the watermark), the day's
    sketches are the query's state: each batch emits the current estimate of the rows it touched, at a
    cost that follows the batch, not the day so far; the state of a day goes once the watermark passes
    its end.
    """
    keyed = events.withColumn("placement", placement_key()).select("event_time", *ROLLUP_KEYS, "user_id")
    levels = _levels(keyed, ("event_time", *ROLLUP_KEYS), "user_id")
    return (
        levels.groupBy(F.window("event_time", "1 day").alias("day_window"), *ROLLUP_KEYS)
        .agg(F.hll_sketch_agg("user_id", viewers_lg_k).alias("sketch"))
        .select(
            F.col("day_window.start").alias("day"),
            *ROLLUP_KEYS,
            F.hll_sketch_estimate("sketch").alias("unique_viewers"),
        )
    )
