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
        T.StructField("placement", T.StringType()),
    ]
)
ENRICHED = T.StructType(
    [*EVENTS.fields]
    + [T.StructField(n, T.StringType()) for n in ("title", "category", "content_type")]
    + [T.StructField("duration_s", T.IntegerType())]
)
AGGREGATES = T.StructType(
    [
        f
        for f in engagement_schema("window", "group", "attribute", "metric", "sketch", "latest").fields
        if f.name != "viewers_sketch"
    ]
)


def t(minute: int, second: int = 0) -> datetime:
    return datetime(2026, 11, 1, 10, minute, second)


def window_of_c1(minute: int, platform: str, placement: str, **metrics: object) -> tuple:
    """The 5-minute window of content c1, affiliate a1 (title T1, news, video of 60 s) at ``minute``."""
    return engagement_row(
        AGGREGATES,
        window_start=t(minute),
        window_end=t(minute + 5),
        content_id="c1",
        affiliate_id="a1",
        placement=placement,
        platform=platform,
        title="T1",
        category="news",
        content_type="video",
        duration_s=60,
        **metrics,
    )


def test_deduplicate_keeps_one_row_per_event_id(spark):
    events = spark.createDataFrame(
        [
            ("e1", "click", t(0), "c1", "a1", "web", "u1", None, None),
            ("e1", "click", t(0), "c1", "a1", "web", "u1", None, None),
            ("e2", "click", t(1), "c1", "a1", "web", "u1", None, None),
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
            ("e1", "impression", t(0), "c1", "a1", "web", "u1", None, "home_hero"),
            ("e2", "impression", t(0), "zz", "a1", "web", "u1", None, "home_hero"),
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
    hero = "home_hero"
    rows = [
        ("1", "impression", t(0), "c1", "a1", "web", "u1", None, hero),
        ("2", "impression", t(1), "c1", "a1", "web", "u2", None, hero),
        ("3", "click", t(1, 30), "c1", "a1", "web", "u1", None, hero),
        ("4", "play_start", t(2), "c1", "a1", "web", "u1", 999, hero),  # watch_ms ignored on play_start
        ("5", "progress", t(3), "c1", "a1", "web", "u1", 10_000, hero),
        ("6", "complete", t(4, 59), "c1", "a1", "web", "u1", 2_500, hero),
        ("7", "impression", t(5), "c1", "a1", "web", "u3", None, hero),  # next window
        ("8", "impression", t(0), "c1", "a1", "ios", "u1", None, hero),  # other platform
        ("9", "impression", t(1), "c1", "a1", "web", "u1", None, None),  # no placement
        ("10", "impression", t(2), "c1", "a1", "web", "u4", None, ""),  # empty placement: none either
    ]
    events = spark.createDataFrame([(*r, "T1", "news", "video", 60) for r in rows], ENRICHED)
    expected = spark.createDataFrame(
        [
            window_of_c1(
                0,
                "web",
                hero,
                impressions=2,
                clicks=1,
                play_starts=1,
                completions=1,
                watch_time_ms=12_500,
                unique_viewers=2,
                last_event_time=t(4, 59),
            ),
            window_of_c1(5, "web", hero, impressions=1, unique_viewers=1, last_event_time=t(5)),
            window_of_c1(0, "ios", hero, impressions=1, unique_viewers=1, last_event_time=t(0)),
            window_of_c1(0, "web", "(none)", impressions=2, unique_viewers=2, last_event_time=t(2)),
        ],
        AGGREGATES,
    )
    actual = aggregate_engagement(events, timedelta(minutes=5)).drop("viewers_sketch")
    assertDataFrameEqual(actual, expected)


def test_rates_are_null_when_the_denominator_is_zero(spark):
    window = {
        "window_start": t(0),
        "window_end": t(5),
        "affiliate_id": "a1",
        "placement": "home_hero",
        "platform": "web",
    }
    aggregates = spark.createDataFrame(
        [
            engagement_row(AGGREGATES, **window, content_id="c1", impressions=4, clicks=1, unique_viewers=1),
            engagement_row(
                AGGREGATES, **window, content_id="c2", play_starts=4, completions=3, unique_viewers=1
            ),
        ],
        AGGREGATES,
    )
    rates = {r.content_id: (r.ctr, r.play_rate, r.completion_rate) for r in add_rates(aggregates).collect()}
    assert rates == {"c1": (0.25, 0.0, None), "c2": (None, None, 0.75)}
