"""The whole pipeline on a real Kinesis-API server: producer -> stream -> the pipeline's queries -> sinks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from devtools.producer import send_lines
from devtools.simulate import SimulationSpec, simulate, write_dimension
from streaming.config import AppConfig
from streaming.run import run_pipeline
from tests import oracle
from tests.pipeline import pipeline_config, warehouse_rows
from tests.streaming.sources.kinesis.conftest import REGION
from tests.streaming.sources.kinesis.quota import GET_RECORDS_QUOTA, busiest_second

METRICS = ("impressions", "clicks", "play_starts", "completions", "watch_time_ms")


def send_traffic(root: Path, stream: str, endpoint: str, events: int = 2500) -> oracle.Expected:
    """Simulated traffic (3 % duplicates, 2 % malformed) put on ``stream``, and the oracle's truth for it."""
    now = datetime.now(UTC)
    spec = SimulationSpec(
        events=events, contents=60, users=300, seed=13, duplicates=0.03, malformed=0.02, now=now
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


def test_available_now_drains_a_backlog_of_many_fetch_windows(spark, tmp_path, make_stream, kinesis_endpoint):
    """Each run's fetch ends at its time bound long before the record bound: in 100 ms a new reader makes
    one GetRecords call (the next may start 200 ms later) of at most 400 records, so a run reads at most
    400 rows. The repeats follow the shard's backlog, not the rows a run read, until every record is in
    the warehouse. One shard: runs read shards by equal counts of records, which moves the event times
    of shards with unequal traffic apart, and the 10 min watermark drops the lagging shard's events
    (docs/kinesis.md)."""
    stream = make_stream(1)
    truth = send_traffic(tmp_path, stream, kinesis_endpoint, events=1200)
    cfg = kinesis_pipeline_config(tmp_path, stream, kinesis_endpoint, "source.max_fetch_time=100 ms")

    reporter = run_pipeline(spark, cfg, available_now=True)

    assert_exactly_once(spark, cfg, stream, truth)
    assert reporter.totals["ingest"]["records_in"] == truth.records
    ingest_commits = Path(cfg.checkpoint.path) / "ingest" / "commits"
    runs = len([path for path in ingest_commits.iterdir() if path.name.isdigit()])  # a batch per run
    assert runs >= -(-truth.records // 400) >= 3


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
