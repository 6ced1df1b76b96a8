"""Health metrics: a JSON-lines file, and CloudWatch PutMetricData against moto's server on loopback."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sinks.metrics import (
    BatchFigures,
    CloudWatchMetrics,
    HealthMetrics,
    JsonLinesMetrics,
    open_metrics,
    read_figures,
)
from streaming.config import MetricsConfig
from tests.sinks.warehouse.conftest import _fake_aws_credentials, aws_endpoint  # noqa: F401 (fixtures)

T = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
INGEST = {"records_in": 120, "valid": 110, "quarantined": 10, "batch_duration_ms": 850, "late_events": None}


def test_each_batch_is_one_json_line_with_its_quarantine_counts_by_reason(tmp_path: Path) -> None:
    path = tmp_path / "metrics" / "pipeline.jsonl"
    metrics = HealthMetrics([JsonLinesMetrics(path)])

    metrics.add_reasons("events", 4, {"unknown_platform": 7, "bad_watch_ms": 3})
    metrics.report("ingest", 4, T, INGEST)
    metrics.report("events", 4, T + timedelta(seconds=2), {"batch_duration_ms": 400})

    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"time": "2026-11-02T12:00:00Z", "query": "ingest", "batch_id": 4, "records_in": 120, "valid": 110,
         "quarantined": 10, "batch_duration_ms": 850},
        {"time": "2026-11-02T12:00:02Z", "query": "events", "batch_id": 4, "batch_duration_ms": 400,
         "quarantined_by_reason": {"bad_watch_ms": 3, "unknown_platform": 7}},
    ]  # fmt: skip


def test_figures_reach_cloudwatch_with_the_configured_namespace_and_dimensions(aws_endpoint: str) -> None:  # noqa: F811
    import boto3

    cfg = MetricsConfig(
        path=None,
        cloudwatch_namespace="MediaPulse/Test",
        cloudwatch_dimensions={"Environment": "staging"},
        region="us-east-1",
        endpoint_url=aws_endpoint,
    )
    metrics = open_metrics(cfg)
    now = datetime.now(UTC).replace(microsecond=0)
    metrics.add_reasons("events", 1, {"unknown_platform": 7})
    metrics.report("ingest", 1, now, INGEST)
    metrics.report("events", 1, now, {"batch_duration_ms": 400})

    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=aws_endpoint)
    listed = cloudwatch.list_metrics(Namespace="MediaPulse/Test")["Metrics"]
    found = {(m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"])))
             for m in listed}  # fmt: skip
    ingest = (("Environment", "staging"), ("Query", "ingest"))
    assert {("RecordsIn", ingest), ("ValidRecords", ingest), ("QuarantinedRecords", ingest)} <= found
    reason = (("Environment", "staging"), ("Query", "events"), ("Reason", "unknown_platform"))
    assert ("QuarantinedByReason", reason) in found
    stats = cloudwatch.get_metric_statistics(
        Namespace="MediaPulse/Test",
        MetricName="RecordsIn",
        Dimensions=[{"Name": "Environment", "Value": "staging"}, {"Name": "Query", "Value": "ingest"}],
        StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=5),
        Period=60,
        Statistics=["Sum"],
    )
    assert [p["Sum"] for p in stats["Datapoints"]] == [120.0]


def test_a_failing_destination_is_logged_and_the_others_still_get_the_figures(
    tmp_path: Path, caplog: Any
) -> None:
    class Refusing:
        def put(self, batch: Any) -> None:
            raise OSError("throttled")

    path = tmp_path / "pipeline.jsonl"
    metrics = HealthMetrics([Refusing(), JsonLinesMetrics(path)])

    with caplog.at_level(logging.WARNING, logger="sinks.metrics"):
        metrics.report("ingest", 9, T, INGEST)

    assert "metrics to Refusing failed for ingest batch 9: throttled" in caplog.text
    assert json.loads(path.read_text())["batch_id"] == 9


def test_cloudwatch_data_points_carry_units_and_the_batch_time() -> None:
    batch = BatchFigures("engagement", 2, T, {"watermark_delay_s": 612.5, "millis_behind_latest": 0})
    points = CloudWatchMetrics("ns").data(batch)
    assert [(p["MetricName"], p["Unit"], p["Value"], p["Timestamp"]) for p in points] == [
        ("WatermarkDelay", "Seconds", 612.5, T),
        ("MillisBehindLatest", "Milliseconds", 0.0, T),
    ]


def test_metrics_path_is_a_local_file() -> None:
    with pytest.raises(ValueError, match="local file"):
        MetricsConfig(path="s3://bucket/metrics.jsonl")


def test_read_figures_returns_the_batches_written_in_range_and_skips_a_half_written_line(
    tmp_path: Path, caplog: Any
) -> None:
    path = tmp_path / "metrics.jsonl"
    start = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    written = [
        BatchFigures("ingest", 0, start, {"records_in": 10.0, "valid": 9.0, "quarantined": 1.0}),
        BatchFigures("events", 0, start + timedelta(seconds=10), {}, {"malformed_json": 1}),
        BatchFigures("engagement", 0, start + timedelta(seconds=20), {"freshness_lag_s": 4.5}),
    ]
    sink = JsonLinesMetrics(path)
    for batch in written:
        sink.put(batch)
    with path.open("a") as f:
        f.write('{"time":"2026-11-01T12:00:30Z","query":"ing')  # a crash mid-line

    with caplog.at_level(logging.WARNING):
        assert read_figures(path) == written
        assert read_figures(path, start + timedelta(seconds=5), start + timedelta(seconds=20)) == written[1:2]
    assert "skipped 1 line(s)" in caplog.text
    assert read_figures(tmp_path / "missing.jsonl") == []
