"""The whole pipeline on a real Kinesis-API server: producer -> stream -> both queries -> sinks."""

from __future__ import annotations

from datetime import UTC, datetime

from streaming.producer import send_lines
from streaming.run import run_pipeline
from streaming.simulate import SimulationSpec, simulate, write_dimension
from tests import oracle
from tests.pipeline import pipeline_config, warehouse_rows
from tests.sources.kinesis.conftest import REGION

METRICS = ("impressions", "clicks", "play_starts", "completions", "watch_time_ms")


def test_producer_to_warehouse_is_exactly_once_with_duplicates_and_malformed_records(
    spark, tmp_path, make_stream, kinesis_endpoint
):
    stream = make_stream(4)
    now = datetime.now(UTC)
    spec = SimulationSpec(
        events=2500, contents=60, users=300, seed=13, duplicates=0.03, malformed=0.02, now=now
    )
    traffic = simulate(spec)
    write_dimension(traffic, tmp_path / "dimensions" / "content.csv")
    report = send_lines(
        traffic.lines, stream=stream, endpoint_url=kinesis_endpoint, region=REGION, progress=False
    )
    sent = [line for line in traffic.lines if line.strip()]
    assert report.records == len(sent)
    # The oracle reads the same records; arrival order across shards does not change the truth
    # (a retry carries the same content as its original).
    truth_file = tmp_path / "sent.jsonl"
    truth_file.write_text("\n".join(sent) + "\n")
    truth = oracle.expected([truth_file], now)

    cfg = pipeline_config(
        tmp_path,
        "source.kind=kinesis",
        f"source.stream_name={stream}",
        f"source.endpoint_url={kinesis_endpoint}",
        f"source.region={REGION}",
        "source.implementation=python",
        "source.max_records_per_trigger=1500",  # the backlog takes several runs of --available-now
    )
    reporter = run_pipeline(spark, cfg, available_now=True)

    actual = warehouse_rows(cfg)
    assert {k: {m: v[m] for m in METRICS} for k, v in actual.items()} == {
        k: {m: v[m] for m in METRICS} for k, v in truth.aggregates.items()
    }
    assert spark.read.parquet(f"{cfg.lake.path}/events").count() == truth.valid_unique
    quarantine = spark.read.parquet(f"{cfg.lake.path}/quarantine")
    assert quarantine.count() == truth.quarantined
    assert quarantine.filter(~quarantine.source.startswith(f"kinesis://{stream}/")).count() == 0
    assert reporter.totals["ingest"]["records_in"] == truth.records
