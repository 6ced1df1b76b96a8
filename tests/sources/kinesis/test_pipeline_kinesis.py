"""The whole pipeline on a real Kinesis-API server: producer -> stream -> the pipeline's queries -> sinks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from streaming.config import AppConfig
from streaming.producer import send_lines
from streaming.run import run_pipeline
from streaming.simulate import SimulationSpec, simulate, write_dimension
from tests import oracle
from tests.pipeline import pipeline_config, warehouse_rows
from tests.sources.kinesis.conftest import REGION
from tests.sources.kinesis.quota import GET_RECORDS_QUOTA, busiest_second

METRICS = ("impressions", "clicks", "play_starts", "completions", "watch_time_ms")


def send_traffic(root: Path, stream: str, endpoint: str) -> oracle.Expected:
    """Simulated traffic (3 % duplicates, 2 % malformed) put on ``stream``, and the oracle's truth for it."""
    now = datetime.now(UTC)
    spec = SimulationSpec(
        events=2500, contents=60, users=300, seed=13, duplicates=0.03, malformed=0.02, now=now
    )
    traffic = simulate(spec)
    write_dimension(traffic, root / "dimensions" / "content.csv")
    report = send_lines(traffic.lines, stream=stream, endpoint_url=endpoint, region=REGION, progress=False)
    sent = [line for line in traffic.lines if line.strip()]
    assert report.records == len(sent)
    # The oracle reads the same records; arrival order across shards does not change the truth
    # (a retry carries the same content as its original).
    truth_file = root / "sent.jsonl"
    truth_file.write_text("\n".join(sent) + "\n")
    return oracle.expected([truth_file], now)


def kinesis_pipeline_config(root: Path, stream: str, endpoint: str, *overrides: str) -> AppConfig:
    return pipeline_config(
        root,
        "source.kind=kinesis",
        f"source.stream_name={stream}",
        f"source.endpoint_url={endpoint}",
        f"source.region={REGION}",
        "source.implementation=python",
        *overrides,
    )


def assert_exactly_once(spark: SparkSession, cfg: AppConfig, stream: str, truth: oracle.Expected) -> None:
    actual = warehouse_rows(cfg)
    assert {k: {m: v[m] for m in METRICS} for k, v in actual.items()} == {
        k: {m: v[m] for m in METRICS} for k, v in truth.aggregates.items()
    }
    assert spark.read.parquet(f"{cfg.lake.path}/events").count() == truth.valid_unique
    quarantine = spark.read.parquet(f"{cfg.lake.path}/quarantine")
    assert quarantine.count() == truth.quarantined
    assert quarantine.filter(~quarantine.source.startswith(f"kinesis://{stream}/")).count() == 0


def test_producer_to_warehouse_is_exactly_once_with_duplicates_and_malformed_records(
    spark, tmp_path, make_stream, kinesis_endpoint
):
    stream = make_stream(4)
    truth = send_traffic(tmp_path, stream, kinesis_endpoint)
    cfg = kinesis_pipeline_config(
        tmp_path,
        stream,
        kinesis_endpoint,
        "source.max_records_per_trigger=1500",  # the backlog takes several runs of --available-now
    )
    reporter = run_pipeline(spark, cfg, available_now=True)

    assert_exactly_once(spark, cfg, stream, truth)
    assert reporter.totals["ingest"]["records_in"] == truth.records


# Calls each shard must get while the caught-up pipeline keeps polling, after the backlog is processed:
# a few seconds at the quota, enough for any second of them to hold more than five if the pacing let it.
POLLS_AT_THE_TIP = 15


def test_running_pipeline_keeps_every_shard_within_the_get_records_quota(
    spark, tmp_path, make_stream, kinesis_endpoint, get_records_calls
):
    """Long-running with a trigger far shorter than the pacing, so the pipeline asks each shard for
    records as often as it may, through the backlog and then at the tip. The server's own log of
    GetRecords calls is the judge: no shard gets more than 5 in any one-second window, whichever
    queries the pipeline runs."""
    stream = make_stream(4)
    truth = send_traffic(tmp_path, stream, kinesis_endpoint)
    cfg = kinesis_pipeline_config(
        tmp_path,
        stream,
        kinesis_endpoint,
        "trigger.interval=50 ms",
        "source.max_records_per_trigger=1000",  # several batches, and the source reads ahead between them
    )
    stop = threading.Event()
    calls_when_drained: dict[str, int] = {}

    def drain_poll_then_stop(queries: list[StreamingQuery]) -> None:
        try:
            for query in queries:  # in the order data flows: the reader of the source first
                query.processAllAvailable()
            calls_when_drained.update({shard: len(t) for shard, t in get_records_calls(stream).items()})
            await_calls(get_records_calls, stream, calls_when_drained, POLLS_AT_THE_TIP, timeout=60)
        finally:
            stop.set()

    run_pipeline(spark, cfg, stop=stop, on_started=drain_poll_then_stop)

    calls = get_records_calls(stream)
    assert len(calls) == 4
    assert all(len(calls[shard]) >= calls_when_drained[shard] + POLLS_AT_THE_TIP for shard in calls)
    busiest = {shard: busiest_second(times) for shard, times in calls.items()}
    assert max(busiest.values()) <= GET_RECORDS_QUOTA, f"GetRecords calls in the busiest second: {busiest}"
    assert_exactly_once(spark, cfg, stream, truth)


def await_calls(
    get_records_calls: Callable[[str], dict[str, list[float]]],
    stream: str,
    before: dict[str, int],
    more: int,
    timeout: float,
) -> None:
    """Wait until the server has logged ``more`` GetRecords calls on every shard since ``before``."""
    deadline = time.monotonic() + timeout
    while True:
        calls = get_records_calls(stream)
        if all(len(calls.get(shard, ())) >= count + more for shard, count in before.items()):
            return
        assert time.monotonic() < deadline, f"under {more} more GetRecords calls per shard in {timeout} s"
        time.sleep(0.1)
