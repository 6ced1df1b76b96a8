"""Replays, late events and dimension refresh on the real queries and sinks."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from sinks.base import BatchWriter
from streaming.aggregate import daily_viewers_from_events
from streaming.query import engagement_sinks, viewers_sinks
from streaming.run import run_pipeline
from streaming.transforms import stamp
from tests.engagement import engagement_row, engagement_schema
from tests.pipeline import pipeline_config, warehouse_query, warehouse_rows

CHECKPOINT_ID = "c0ffee"
DIM_HEADER = "content_id,title,category,content_type,duration_s,publisher,published_at\n"
AGGREGATE_SCHEMA = engagement_schema("window", "group", "attribute", "metric", "sketch", "latest", "rate")
# The event columns the daily unique viewers are rolled up from.
VIEWER_EVENTS = (
    "event_time timestamp, content_id string, affiliate_id string, placement string, platform string, "
    "user_id string"
)

START = datetime(2026, 11, 1, 10, 0)
END = START + timedelta(minutes=5)
WINDOW = {
    "window_start": START, "window_end": END, "affiliate_id": "a1", "placement": "home_hero",
    "last_event_time": START + timedelta(minutes=1),
}  # fmt: skip
C1 = dict(
    WINDOW, content_id="c1", platform="web", title="T", category="news", content_type="video", impressions=10,
    clicks=2, play_starts=1, unique_viewers=7, ctr=0.2, completion_rate=0.0,
)  # fmt: skip
C2 = {**WINDOW, "content_id": "c2", "platform": "ios", "impressions": 4, "unique_viewers": 3, "ctr": 0.0}


def sketch(spark, users: range) -> bytes:
    """The HLL sketch of ``u<n>`` for each n of ``users``, as the aggregation keeps it."""
    values = ", ".join(f"('u{n}')" for n in users)
    return spark.sql(f"SELECT hll_sketch_agg(user_id, 14) FROM VALUES {values} AS t(user_id)").first()[0]


def rows(spark):
    """C1 (viewers u1-u7) and C2 (viewers u5-u7) with their sketches: 7 distinct viewers in all."""
    return [
        engagement_row(AGGREGATE_SCHEMA, **C1, viewers_sketch=sketch(spark, range(1, 8))),
        engagement_row(AGGREGATE_SCHEMA, **C2, viewers_sketch=sketch(spark, range(5, 8))),
    ]


def event(event_id: str, minute: int, event_type: str = "impression", content: str = "c1") -> str:
    moment = datetime(2026, 11, 1, 10, 0, tzinfo=UTC) + timedelta(minutes=minute)
    return json.dumps(
        {
            "event_id": event_id,
            "event_type": event_type,
            "event_time": moment.isoformat().replace("+00:00", "Z"),
            "content_id": content,
            "affiliate_id": "a1",
            "platform": "web",
            "user_id": f"u-{event_id}",
        }
    )


def write_batch_file(folder: Path, index: int, lines: list[str]) -> None:
    path = folder / f"part-{index:03d}.json"
    path.write_text("\n".join(lines) + "\n")
    stamp_ns = 1_800_000_000_000_000_000 + index * 1_000_000_000
    os.utime(path, ns=(stamp_ns, stamp_ns))


def write_dimension(root: Path, title: str) -> None:
    (root / "dimensions").mkdir(exist_ok=True)
    (root / "dimensions" / "content.csv").write_text(DIM_HEADER + f"c1,{title},news,video,60,pub,\n")


def ledger(cfg) -> list[tuple]:
    path = cfg.warehouse.url.removeprefix("duckdb:///")
    with duckdb.connect(path, read_only=True) as conn:
        return conn.execute(f"SELECT query_name, batch_id FROM {cfg.warehouse.ledger_table}").fetchall()


def test_the_same_batch_written_twice_changes_nothing(spark, tmp_path):
    write_dimension(tmp_path, "T")
    cfg = pipeline_config(tmp_path)
    batch = spark.createDataFrame(rows(spark), AGGREGATE_SCHEMA)
    writer = BatchWriter(tuple(engagement_sinks(cfg, CHECKPOINT_ID)), prepare=stamp)
    writer(batch, 7)
    first_rows = warehouse_rows(cfg)
    first_lake = spark.read.parquet(f"{cfg.lake.path}/engagement").count()
    writer(batch, 7)
    assert {k: v["impressions"] for k, v in warehouse_rows(cfg).items()} == {
        k: v["impressions"] for k, v in first_rows.items()
    }
    assert spark.read.parquet(f"{cfg.lake.path}/engagement").count() == first_lake == 2
    assert ledger(cfg) == [(f"engagement_{CHECKPOINT_ID}", 7)]
    [watermark] = {r["watermark"] for r in warehouse_query(cfg, "SELECT watermark FROM v_engagement")}
    assert watermark == START + timedelta(minutes=1) - cfg.engagement.watermark


def test_the_same_daily_viewers_batch_written_twice_changes_nothing(spark, tmp_path):
    write_dimension(tmp_path, "T")
    cfg = pipeline_config(tmp_path)
    users = [("c1", "web", f"u{n}") for n in range(1, 8)] + [("c2", "ios", f"u{n}") for n in range(5, 8)]
    events = spark.createDataFrame(
        [(START + timedelta(minutes=1), c, "a1", "home_hero", platform, user) for c, platform, user in users],
        VIEWER_EVENTS,
    )
    writer = BatchWriter(tuple(viewers_sinks(cfg, CHECKPOINT_ID)))
    batch = daily_viewers_from_events(events)
    writer(batch, 2)
    writer(batch, 2)
    everyone = "content_id = '(all)' AND affiliate_id = '(all)' AND placement = '(all)' AND platform = '(all)"
    rows = warehouse_query(cfg, f"SELECT unique_viewers FROM daily_unique_viewers WHERE {everyone}'")
    assert rows == [{"unique_viewers": 7}]  # one sketch of every viewer, not 7 + 3
    per_content = warehouse_query(
        cfg,
        "SELECT content_id, unique_viewers FROM daily_unique_viewers WHERE affiliate_id = '(all)' "
        "AND placement = '(all)' AND platform = '(all)' AND content_id <> '(all)' ORDER BY content_id",
    )
    assert per_content == [
        {"content_id": "c1", "unique_viewers": 7},
        {"content_id": "c2", "unique_viewers": 3},
    ]
    # 16 levels; the 4 with neither content nor platform have one row, the other 12 two (c1/web, c2/ios)
    assert len(warehouse_query(cfg, "SELECT * FROM daily_unique_viewers")) == 4 + 12 * 2
    assert ledger(cfg) == [(f"viewers_{CHECKPOINT_ID}", 2)]


def test_a_batch_without_rows_is_not_loaded_into_the_warehouse(spark, tmp_path):
    """A stateful query's batch that only moves the watermark: no staging, no transaction, no ledger row."""
    write_dimension(tmp_path, "T")
    cfg = pipeline_config(tmp_path)
    writer = BatchWriter(tuple(engagement_sinks(cfg, CHECKPOINT_ID)), prepare=stamp)
    writer(spark.createDataFrame(rows(spark), AGGREGATE_SCHEMA), 4)
    writer(spark.createDataFrame([], AGGREGATE_SCHEMA), 5)
    viewers = BatchWriter(tuple(viewers_sinks(cfg, CHECKPOINT_ID)))
    viewers(daily_viewers_from_events(spark.createDataFrame([], VIEWER_EVENTS)), 0)

    assert ledger(cfg) == [(f"engagement_{CHECKPOINT_ID}", 4)]
    assert {k: v["impressions"] for k, v in warehouse_rows(cfg).items()} == {
        (START.replace(tzinfo=UTC), "c1", "a1", "home_hero", "web"): 10,
        (START.replace(tzinfo=UTC), "c2", "a1", "home_hero", "ios"): 4,
    }
    assert not any(Path(cfg.staging_path).rglob("*.parquet"))


def test_a_replayed_batch_replaces_its_own_lake_output(spark, tmp_path):
    write_dimension(tmp_path, "T")
    cfg = pipeline_config(tmp_path)
    lake_sink = engagement_sinks(cfg, CHECKPOINT_ID)[0]
    lake_sink.write(stamp(spark.createDataFrame(rows(spark)[:1], AGGREGATE_SCHEMA), 3), 3)
    replayed = engagement_row(AGGREGATE_SCHEMA, **{**C1, "impressions": 11})
    lake_sink.write(stamp(spark.createDataFrame([replayed], AGGREGATE_SCHEMA), 3), 3)
    assert [r.impressions for r in spark.read.parquet(f"{cfg.lake.path}/engagement").collect()] == [11]


def test_late_events_never_change_closed_windows_and_are_counted(spark, tmp_path):
    write_dimension(tmp_path, "T")
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    cfg = pipeline_config(tmp_path, "source.max_files_per_trigger=1")
    # Run 0 moves the watermark to 10:20 - 10 min = 10:10; run 1 closes (evicts) the 10:00 window;
    # run 2 brings a late event for the closed 10:00 window. The watermark is the engagement query's,
    # so each file is processed by a run of its own.
    late = 0
    for index, lines in enumerate(
        [[event("e1", 1), event("e2", 2), event("e3", 20)], [event("e4", 21)], [event("late", 3)]]
    ):
        write_batch_file(incoming, index, lines)
        reporter = run_pipeline(spark, cfg, available_now=True)
        late += reporter.totals["engagement"]["late"]
    windows = warehouse_rows(cfg)
    ten = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
    assert windows[(ten, "c1", "a1", "(none)", "web")]["impressions"] == 2
    assert windows[(ten + timedelta(minutes=20), "c1", "a1", "(none)", "web")]["impressions"] == 2
    assert late == 1
    logged = {r.event_id for r in spark.read.parquet(f"{cfg.lake.path}/events").collect()}
    assert logged == {"e1", "e2", "e3", "late", "e4"}, "late events still land in the event log"


def test_a_changed_dimension_is_picked_up_without_a_restart(spark, tmp_path):
    write_dimension(tmp_path, "Old title")
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    write_batch_file(incoming, 0, [event("e1", 1)])
    cfg = pipeline_config(tmp_path, "dimensions.refresh_interval=1 ms")
    stop = threading.Event()

    def change_dimension_midway(queries):
        for query in queries:
            query.processAllAvailable()
        write_dimension(tmp_path, "New title")
        write_batch_file(incoming, 1, [event("e2", 30)])
        for query in queries:
            query.processAllAvailable()
        stop.set()

    run_pipeline(spark, cfg, stop=stop, on_started=change_dimension_midway)
    titles = {k[0].minute: v["title"] for k, v in warehouse_rows(cfg).items()}
    assert titles == {0: "Old title", 30: "New title"}
