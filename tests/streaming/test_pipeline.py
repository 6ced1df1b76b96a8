"""The real queries on simulated files, checked against the independent oracle (tests/oracle.py)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, timedelta
from pathlib import Path

import pytest

from streaming.run import run_pipeline
from tests import oracle
from tests.pipeline import (
    METRICS,
    assert_matches_truth,
    assert_run_matches_truth,
    make_scenario,
    pipeline_config,
    warehouse_query,
    warehouse_rows,
)


@pytest.fixture(scope="module")
def finished_run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    scenario = make_scenario(root, events=4000, files=8, contents=120, users=600, seed=11)
    scenario.release()
    cfg = pipeline_config(root, "source.max_files_per_trigger=3")
    reporter = run_pipeline(spark, cfg, available_now=True)
    truth = oracle.expected(scenario.incoming_files(), scenario.now)
    return cfg, truth, reporter


def test_warehouse_equals_the_ground_truth(finished_run):
    cfg, truth, _ = finished_run
    assert_matches_truth(warehouse_rows(cfg), truth)


def test_lake_holds_each_unique_valid_event_once(spark, finished_run):
    cfg, truth, _ = finished_run
    events = spark.read.parquet(f"{cfg.lake.path}/events")
    assert events.count() == truth.valid_unique
    assert events.select("event_id").distinct().count() == truth.valid_unique


def test_quarantine_holds_every_invalid_record(spark, finished_run):
    cfg, truth, _ = finished_run
    quarantine = spark.read.parquet(f"{cfg.lake.path}/quarantine")
    assert quarantine.count() == truth.quarantined
    reasons = {
        r.reason: r["count"]
        for r in quarantine.selectExpr("explode(reasons) AS reason").groupBy("reason").count().collect()
    }
    assert reasons == truth.reasons


def test_records_in_equal_valid_plus_quarantined(finished_run):
    _, truth, reporter = finished_run
    totals = reporter.totals["ingest"]
    assert totals["records_in"] == truth.records
    assert totals["records_in"] == totals["valid"] + totals["quarantined"]
    assert totals["quarantined"] == truth.quarantined


def test_a_backlog_reaches_the_consumers_in_the_ingest_admission_steps(finished_run):
    """8 files, at most 3 per ingest batch: 3 ingest batches, and each consumer loads 3 batches with rows
    (one per ingest batch) instead of the whole backlog in one."""
    cfg, _, _ = finished_run
    ledger = warehouse_query(
        cfg,
        "SELECT split_part(query_name, '_', 1) AS query, count(*) AS n FROM mediapulse_batches GROUP BY 1",
    )
    assert {row["query"]: row["n"] for row in ledger} == {"engagement": 3, "viewers": 3}


def test_lake_engagement_latest_version_of_each_window_equals_the_warehouse(spark, finished_run):
    from pyspark.sql import functions as F

    cfg, _, _ = finished_run
    lake = spark.read.parquet(f"{cfg.lake.path}/engagement")
    latest = (
        lake.groupBy("window_start", "content_id", "affiliate_id", "placement", "platform")
        .agg(F.max_by(F.struct(*METRICS), "batch_id").alias("m"))
        .collect()
    )
    from_lake = {
        (r.window_start.replace(tzinfo=UTC), r.content_id, r.affiliate_id, r.placement, r.platform): (
            r.m.asDict()
        )
        for r in latest
    }
    from_warehouse = {k: {m: v[m] for m in METRICS} for k, v in warehouse_rows(cfg).items()}
    assert from_lake == from_warehouse


def test_restart_from_checkpoint_keeps_totals_exact(spark, tmp_path):
    scenario = make_scenario(tmp_path, events=2500, files=6, contents=80, users=400, seed=5)
    cfg = pipeline_config(tmp_path, "source.max_files_per_trigger=2")
    scenario.release(3)
    run_pipeline(spark, cfg, available_now=True)
    scenario.release()
    run_pipeline(spark, cfg, available_now=True)
    assert_run_matches_truth(spark, scenario, cfg)


def test_stop_request_stops_after_the_current_batch_with_exact_totals(spark, tmp_path):
    scenario = make_scenario(tmp_path, events=1500, files=4, contents=60, users=300, seed=3)
    scenario.release()
    cfg = pipeline_config(tmp_path, "source.max_files_per_trigger=1")
    stop = threading.Event()

    def drain_then_stop(queries):
        for query in queries:
            query.processAllAvailable()
        stop.set()

    run_pipeline(spark, cfg, stop=stop, on_started=drain_then_stop)
    assert not any(q.isActive for q in spark.streams.active)
    truth = oracle.expected(scenario.incoming_files(), scenario.now)
    assert_matches_truth(warehouse_rows(cfg), truth)


def test_backfill_recomputes_windows_from_the_event_log(spark, finished_run, tmp_path):
    from streaming.backfill import run_backfill
    from streaming.config import load_config

    cfg, truth, _ = finished_run
    fresh = load_config(
        overrides=[
            f"lake.path={cfg.lake.path}",
            f"dimensions.content_path={cfg.dimensions.content_path}",
            f"warehouse.url=duckdb:///{tmp_path / 'backfill.duckdb'}",
        ],
        environ={},
    )
    start = min(k[0] for k in truth.aggregates)
    end = max(k[0] for k in truth.aggregates) + timedelta(minutes=5)
    rows = run_backfill(spark, fresh, start, end)
    assert rows == len(truth.aggregates)
    assert_matches_truth(warehouse_rows(fresh), truth)


def test_stop_marker_stops_the_app_after_the_current_batch(spark, tmp_path):
    scenario = make_scenario(tmp_path, events=800, files=2, contents=30, users=100, seed=4)
    scenario.release()
    marker = tmp_path / "STOP"
    cfg = pipeline_config(tmp_path, f"run.stop_marker={marker}", "run.stop_poll_interval=100 ms")

    def drain_then_mark(queries):
        for query in queries:
            query.processAllAvailable()
        marker.touch()

    reporter = run_pipeline(spark, cfg, on_started=drain_then_mark)
    assert not any(q.isActive for q in spark.streams.active)
    truth = oracle.expected(scenario.incoming_files(), scenario.now)
    assert reporter.totals["ingest"]["records_in"] == truth.records
    assert_matches_truth(warehouse_rows(cfg), truth)


def test_a_missing_source_folder_is_a_clear_error_naming_the_key(spark, tmp_path):
    from streaming.sources.files import SourceError

    make_scenario(tmp_path, events=10, files=1, contents=5, users=5, seed=1)
    cfg = pipeline_config(tmp_path, f"source.path={tmp_path / 'nowhere'}")
    with pytest.raises(SourceError, match=r"source\.path"):
        run_pipeline(spark, cfg, available_now=True)
    assert not spark.streams.active


def test_the_health_metrics_file_has_each_batch_s_figures_and_they_add_up_to_the_truth(finished_run):
    cfg, truth, _ = finished_run
    lines = [json.loads(line) for line in Path(cfg.metrics.path).read_text().splitlines()]
    by_query: dict[str, list[dict]] = {}
    for line in lines:
        by_query.setdefault(line["query"], []).append(line)

    ingest, events, engagement = by_query["ingest"], by_query["events"], by_query["engagement"]
    assert sum(line["records_in"] for line in ingest) == truth.records
    assert sum(line["quarantined"] for line in ingest) == truth.quarantined
    assert sum(line["valid"] for line in ingest) == truth.records - truth.quarantined
    reasons: dict[str, int] = {}
    for line in events:
        for reason, count in line.get("quarantined_by_reason", {}).items():
            reasons[reason] = reasons.get(reason, 0) + count
    assert reasons == truth.reasons
    assert sum(line["late_events"] for line in engagement) == 0
    with_data = [line for line in engagement if "freshness_lag_s" in line]
    assert with_data and all(line["freshness_lag_s"] >= 0 for line in with_data)
    delays = [line["watermark_delay_s"] for line in engagement if "watermark_delay_s" in line]
    assert delays and all(delay >= cfg.engagement.watermark.total_seconds() for delay in delays)
    assert all(line["batch_duration_ms"] > 0 for line in lines)
    assert len({(line["query"], line["batch_id"]) for line in lines}) == len(lines)  # one line a batch
