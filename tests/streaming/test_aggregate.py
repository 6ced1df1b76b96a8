"""Unique viewers merged from window sketches: daily rollups at every level and any range, against plain
Python distinct counts of the same events."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from pyspark.sql import types as T

from streaming.aggregate import aggregate_engagement, daily_unique_viewers, unique_viewers_between

EVENTS = T.StructType(
    [
        T.StructField("event_type", T.StringType()),
        T.StructField("event_time", T.TimestampType()),
        T.StructField("content_id", T.StringType()),
        T.StructField("affiliate_id", T.StringType()),
        T.StructField("placement", T.StringType()),
        T.StructField("platform", T.StringType()),
        T.StructField("user_id", T.StringType()),
        T.StructField("watch_ms", T.LongType()),
        *(T.StructField(n, T.StringType()) for n in ("title", "category", "content_type")),
        T.StructField("duration_s", T.IntegerType()),
    ]
)
DAY = datetime(2026, 11, 1)
KEYS = ("content_id", "affiliate_id", "placement", "platform")
# (minute of the day, content, affiliate, placement, platform, user); the last one falls on the next day.
VIEWS = [
    (600, "c1", "a1", "hero", "web", "u1"),
    (601, "c1", "a1", "hero", "web", "u2"),
    (610, "c1", "a1", "hero", "web", "u1"),  # u1 again, another window
    (612, "c1", "a2", "hero", "ios", "u1"),
    (700, "c2", "a1", None, "web", "u3"),
    (705, "c2", "a1", "side", "web", "u2"),
    (1439, "c1", "a1", "hero", "web", "u4"),
    (1445, "c1", "a1", "hero", "web", "u5"),  # the next day
]


def events(spark, views):
    rows = [
        ("impression", DAY + timedelta(minutes=m), c, a, p, pl, u, None, "T", "news", "video", 60)
        for m, c, a, p, pl, u in views
    ]
    return spark.createDataFrame(rows, EVENTS)


def expected_daily(views, level):
    """Distinct users per (day, key) with keys outside ``level`` as '(all)', in plain Python."""
    users: dict[tuple, set[str]] = {}
    for minute, *values, user in views:
        values[2] = values[2] or "(none)"
        day = DAY + timedelta(days=minute // 1440)
        key = (day, *(v if k in level else "(all)" for k, v in zip(KEYS, values, strict=True)))
        users.setdefault(key, set()).add(user)
    return {k: len(v) for k, v in users.items()}


def test_daily_rollup_merges_every_version_of_every_window_at_every_level(spark):
    first = aggregate_engagement(events(spark, VIEWS[:3]), timedelta(minutes=5))  # an earlier version
    latest = aggregate_engagement(events(spark, VIEWS), timedelta(minutes=5))
    sketches = first.unionByName(latest)

    rolled = {
        (r.day, r.content_id, r.affiliate_id, r.placement, r.platform): r.unique_viewers
        for r in daily_unique_viewers(sketches).collect()
    }

    expected: dict[tuple, int] = {}
    for size in range(len(KEYS) + 1):
        for level in itertools.combinations(KEYS, size):
            expected.update(expected_daily(VIEWS, level))
    assert rolled == expected


def test_daily_rollup_returns_only_the_rows_a_batch_touches(spark):
    sketches = aggregate_engagement(events(spark, VIEWS), timedelta(minutes=5))
    touched = sketches.filter("content_id = 'c2' AND placement = 'side'")

    keys = {
        (r.content_id, r.affiliate_id, r.placement, r.platform)
        for r in daily_unique_viewers(sketches, touched).collect()
    }

    assert len(keys) == 16  # one row per level, each the touched row's projection
    assert all(k[0] in ("c2", "(all)") and k[2] in ("side", "(all)") for k in keys)
    assert ("(all)", "(all)", "(all)", "(all)") in keys


def test_unique_viewers_over_a_range_count_each_user_once(spark):
    sketches = aggregate_engagement(events(spark, VIEWS), timedelta(minutes=5))
    start, end = DAY + timedelta(minutes=600), DAY + timedelta(minutes=1440)

    got = {r.content_id: r.unique_viewers for r in unique_viewers_between(sketches, start, end).collect()}

    assert got == {"c1": 3, "c2": 2}  # c1: u1, u2, u4 (u1 in three windows); c2: u3, u2
