from __future__ import annotations

from datetime import datetime, timedelta

from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from streaming.aggregate import add_rates, aggregate_engagement
from streaming.dedup import deduplicate
from streaming.enrich import enrich_with_content, latest_content
from streaming.schema import CONTENT_DIM_SCHEMA
from tests.engagement import engagement_row, engagement_schema

EVENTS = T.StructType(
    [
        T.StructField("event_id", T.StringType()),
        T.StructField("event_type", T.StringType()),
        T.StructField("event_time", T.TimestampType()),
        T.StructField("content_id", T.StringType()),
        T.StructField("affiliate_id", T.StringType()),
        T.StructField("platform", T.StringType()),
        T.StructField("user_id", T.StringType()),
        T.StructField("watch_ms", T.LongType()),
    ]
)
ENRICHED = T.StructType(
    [*EVENTS.fields] + [T.StructField(n, T.StringType()) for n in ("title", "category", "content_type")]
)
AGGREGATES = engagement_schema("window", "group", "attribute", "metric")


def t(minute: int, second: int = 0) -> datetime:
    return datetime(2026, 11, 1, 10, minute, second)


def window_of_c1(minute: int, platform: str, **metrics: int) -> tuple:
    """The 5-minute window of content c1, affiliate a1 (title T1, news, video) starting at ``minute``."""
    return engagement_row(
        AGGREGATES,
        window_start=t(minute),
        window_end=t(minute + 5),
        content_id="c1",
        affiliate_id="a1",
        platform=platform,
        title="T1",
        category="news",
        content_type="video",
        **metrics,
    )


def test_deduplicate_keeps_one_row_per_event_id(spark):
    events = spark.createDataFrame(
        [
            ("e1", "click", t(0), "c1", "a1", "web", "u1", None),
            ("e1", "click", t(0), "c1", "a1", "web", "u1", None),
            ("e2", "click", t(1), "c1", "a1", "web", "u1", None),
        ],
        EVENTS,
    )
    deduped = deduplicate(events, "event_time", timedelta(minutes=10))
    assert sorted(r.event_id for r in deduped.collect()) == ["e1", "e2"]


def test_latest_content_keeps_the_most_recently_published_row(spark):
    content = spark.createDataFrame(
        [
            ("c1", "Old", "news", "video", 60, "p", datetime(2026, 1, 1)),
            ("c1", "New", "news", "video", 60, "p", datetime(2026, 2, 1)),
            ("c2", "Other", "sport", "clip", 30, "p", None),
        ],
        CONTENT_DIM_SCHEMA,
    )
    assert sorted((r.content_id, r.title) for r in latest_content(content).collect()) == [
        ("c1", "New"),
        ("c2", "Other"),
    ]


def test_enrich_keeps_events_without_content_and_flags_them(spark):
    events = spark.createDataFrame(
        [
            ("e1", "impression", t(0), "c1", "a1", "web", "u1", None),
            ("e2", "impression", t(0), "zz", "a1", "web", "u1", None),
        ],
        EVENTS,
    )
    content = spark.createDataFrame([("c1", "T1", "news", "video", 60, "p", None)], CONTENT_DIM_SCHEMA)
    enriched = enrich_with_content(events, content)
    assert sorted((r.event_id, r.title, r.content_known) for r in enriched.collect()) == [
        ("e1", "T1", True),
        ("e2", None, False),
    ]


def test_aggregate_counts_types_sums_watch_time_and_counts_viewers_per_window(spark):
    rows = [
        ("1", "impression", t(0), "c1", "a1", "web", "u1", None),
        ("2", "impression", t(1), "c1", "a1", "web", "u2", None),
        ("3", "click", t(1, 30), "c1", "a1", "web", "u1", None),
        ("4", "play_start", t(2), "c1", "a1", "web", "u1", 999),  # watch_ms ignored on play_start
        ("5", "progress", t(3), "c1", "a1", "web", "u1", 10_000),
        ("6", "complete", t(4, 59), "c1", "a1", "web", "u1", 2_500),
        ("7", "impression", t(5), "c1", "a1", "web", "u3", None),  # next window
        ("8", "impression", t(0), "c1", "a1", "ios", "u1", None),  # other platform
    ]
    events = spark.createDataFrame([(*r, "T1", "news", "video") for r in rows], ENRICHED)
    expected = spark.createDataFrame(
        [
            window_of_c1(
                0,
                "web",
                impressions=2,
                clicks=1,
                play_starts=1,
                completions=1,
                watch_time_ms=12_500,
                unique_viewers=2,
            ),
            window_of_c1(5, "web", impressions=1, unique_viewers=1),
            window_of_c1(0, "ios", impressions=1, unique_viewers=1),
        ],
        AGGREGATES,
    )
    actual = aggregate_engagement(events, timedelta(minutes=5)).drop("viewers_sketch")
    assertDataFrameEqual(actual, expected)


def test_rates_are_null_when_the_denominator_is_zero(spark):
    window = {"window_start": t(0), "window_end": t(5), "affiliate_id": "a1", "platform": "web"}
    aggregates = spark.createDataFrame(
        [
            engagement_row(AGGREGATES, **window, content_id="c1", impressions=4, clicks=1, unique_viewers=1),
            engagement_row(
                AGGREGATES, **window, content_id="c2", play_starts=4, completions=3, unique_viewers=1
            ),
        ],
        AGGREGATES,
    )
    rates = {r.content_id: (r.ctr, r.completion_rate) for r in add_rates(aggregates).collect()}
    assert rates == {"c1": (0.25, None), "c2": (None, 0.75)}
