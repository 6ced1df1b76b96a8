"""Whole queries: ``read_kinesis`` with the Python source against the local Kinesis-API server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import DataStreamWriter
from pyspark.sql.types import BinaryType, StringType, StructField, StructType, TimestampType

from streaming.config import KinesisSourceConfig
from streaming.sources.kinesis import (
    MARKER_FILE,
    ImplementationMismatchError,
    StreamNotFoundError,
    read_kinesis,
)
from tests.streaming.sources.kinesis.conftest import put_lines

# The awslabs spark-sql-kinesis-connector's documented schema, written out independently of the code.
CONNECTOR_SCHEMA = StructType(
    [
        StructField("data", BinaryType(), True),
        StructField("streamName", StringType(), True),
        StructField("partitionKey", StringType(), True),
        StructField("sequenceNumber", StringType(), True),
        StructField("approximateArrivalTimestamp", TimestampType(), True),
    ]
)


def events(count: int, start: int = 0) -> list[str]:
    return [json.dumps({"user_id": f"user-{i % 11}", "n": i}) for i in range(start, start + count)]


def run_to_end(writer: DataStreamWriter, checkpoint: Path) -> None:
    """Start the query with trigger(availableNow) and wait until it has read what is available."""
    query = writer.option("checkpointLocation", str(checkpoint)).trigger(availableNow=True).start()
    try:
        query.awaitTermination(120)
    finally:
        query.stop()


def run_available_now(frame: DataFrame, checkpoint: Path) -> list[list[dict[str, Any]]]:
    """Run the query with trigger(availableNow): each micro-batch's rows, in the order the source gave."""
    batches: list[list[dict[str, Any]]] = []

    def collect(batch: DataFrame, batch_id: int) -> None:
        batches.append([row.asDict() for row in batch.collect()])

    run_to_end(frame.writeStream.foreachBatch(collect), checkpoint)
    return batches


def data_of(rows: list[dict[str, Any]]) -> list[str]:
    return [bytes(row["data"]).decode() for row in rows]


def per_user(lines: list[str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for line in lines:
        grouped.setdefault(json.loads(line)["user_id"], []).append(line)
    return grouped


def test_frame_has_the_connector_schema(
    spark: SparkSession,
    make_stream: Callable[[int], str],
    source_config: Callable[..., KinesisSourceConfig],
    tmp_path: Path,
) -> None:
    frame = read_kinesis(spark, source_config(make_stream(1)), str(tmp_path / "checkpoint"))

    assert frame.isStreaming
    assert frame.schema == CONNECTOR_SCHEMA


def test_available_now_yields_every_record_once_in_order_per_shard(
    spark: SparkSession,
    kinesis_endpoint: str,
    make_stream: Callable[[int], str],
    source_config: Callable[..., KinesisSourceConfig],
    tmp_path: Path,
) -> None:
    stream = make_stream(3)
    sent = events(500)
    put_lines(kinesis_endpoint, stream, sent)
    checkpoint = tmp_path / "checkpoint"

    batches = run_available_now(read_kinesis(spark, source_config(stream), str(checkpoint)), checkpoint)

    rows = [row for batch in batches for row in batch]
    assert sorted(data_of(rows)) == sorted(sent)  # every record, exactly once
    assert per_user(data_of(rows)) == per_user(sent)  # a shard's records in sequence order
    assert {(row["streamName"], row["partitionKey"]) for row in rows} == {
        (stream, json.loads(line)["user_id"]) for line in sent
    }
    assert (checkpoint / MARKER_FILE).read_text().strip() == "python"


def test_restart_from_checkpoint_reads_only_the_new_records(
    spark: SparkSession,
    kinesis_endpoint: str,
    make_stream: Callable[[int], str],
    source_config: Callable[..., KinesisSourceConfig],
    tmp_path: Path,
) -> None:
    stream = make_stream(2)
    first, second = events(150), events(150, start=150)
    checkpoint, output = tmp_path / "checkpoint", tmp_path / "out"

    def run() -> None:
        frame = read_kinesis(spark, source_config(stream), str(checkpoint))
        lines = frame.selectExpr("CAST(data AS STRING) AS line", "sequenceNumber")
        run_to_end(lines.writeStream.format("parquet").option("path", str(output)), checkpoint)

    put_lines(kinesis_endpoint, stream, first)
    run()
    after_first = sorted(row.line for row in spark.read.parquet(str(output)).collect())
    put_lines(kinesis_endpoint, stream, second)
    run()
    after_second = sorted(row.line for row in spark.read.parquet(str(output)).collect())

    assert after_first == sorted(first)
    assert after_second == sorted(first + second)


def test_empty_stream_terminates_with_no_rows(
    spark: SparkSession,
    make_stream: Callable[[int], str],
    source_config: Callable[..., KinesisSourceConfig],
    tmp_path: Path,
) -> None:
    checkpoint = tmp_path / "checkpoint"

    batches = run_available_now(
        read_kinesis(spark, source_config(make_stream(2)), str(checkpoint)), checkpoint
    )

    assert [row for batch in batches for row in batch] == []


def test_max_records_per_trigger_bounds_every_batch(
    spark: SparkSession,
    kinesis_endpoint: str,
    make_stream: Callable[[int], str],
    source_config: Callable[..., KinesisSourceConfig],
    tmp_path: Path,
) -> None:
    stream = make_stream(2)
    put_lines(kinesis_endpoint, stream, events(250))
    frame = read_kinesis(
        spark, source_config(stream, max_records_per_trigger=100), str(tmp_path / "checkpoint")
    )

    query = (
        frame.writeStream.format("noop").option("checkpointLocation", str(tmp_path / "checkpoint")).start()
    )
    try:
        query.processAllAvailable()
    finally:
        query.stop()

    sizes = [progress["numInputRows"] for progress in query.recentProgress if progress["numInputRows"]]
    assert sizes == [100, 100, 50]


def test_missing_stream_is_named_before_the_query_starts(
    spark: SparkSession, source_config: Callable[..., KinesisSourceConfig], tmp_path: Path
) -> None:
    with pytest.raises(StreamNotFoundError, match="'no-such-stream' does not exist"):
        read_kinesis(spark, source_config("no-such-stream"), str(tmp_path / "checkpoint"))


@pytest.fixture
def read_new_stream(
    spark: SparkSession,
    make_stream: Callable[[int], str],
    source_config: Callable[..., KinesisSourceConfig],
) -> Callable[[Path], DataFrame]:
    """``read_new_stream(checkpoint)``: ``read_kinesis`` over a new one-shard stream, checkpointed there."""
    return lambda checkpoint: read_kinesis(spark, source_config(make_stream(1)), str(checkpoint))


def test_checkpoint_of_the_other_implementation_is_refused(
    read_new_stream: Callable[[Path], DataFrame], tmp_path: Path
) -> None:
    checkpoint = tmp_path / "checkpoint"
    (checkpoint / "offsets").mkdir(parents=True)
    (checkpoint / "offsets" / "0").write_text('v1\n{}\n{"metadata":{"streamName":"events","batchId":"0"}}\n')
    (checkpoint / MARKER_FILE).write_text("connector\n")

    with pytest.raises(ImplementationMismatchError, match=r"written by the 'connector' Kinesis source"):
        read_new_stream(checkpoint)


def test_checkpoint_with_offsets_but_no_marker_is_refused(
    read_new_stream: Callable[[Path], DataFrame], tmp_path: Path
) -> None:
    checkpoint = tmp_path / "checkpoint"
    (checkpoint / "offsets").mkdir(parents=True)
    (checkpoint / "offsets" / "0").write_text("v1\n{}\n{}\n")

    with pytest.raises(ImplementationMismatchError, match="no source-implementation marker"):
        read_new_stream(checkpoint)


def test_marker_of_a_checkpoint_without_offsets_is_replaced(
    read_new_stream: Callable[[Path], DataFrame], tmp_path: Path
) -> None:
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / MARKER_FILE).write_text("connector\n")

    read_new_stream(checkpoint)

    assert (checkpoint / MARKER_FILE).read_text() == "python\n"


def test_latest_survives_a_restart_before_the_first_commit(
    spark: SparkSession,
    kinesis_endpoint: str,
    make_stream: Callable[[int], str],
    source_config: Callable[..., KinesisSourceConfig],
    tmp_path: Path,
) -> None:
    """The first attempt plans batch 0 from LATEST and fails before committing it; the restart replays
    batch 0 from the same pinned time, so it reads exactly those records again (a time pinned anew would
    start after them and find later records past the batch's end)."""
    stream = make_stream(1)
    before = events(40)  # sent before the query starts: LATEST skips them
    put_lines(kinesis_endpoint, stream, before)
    cfg = source_config(stream, starting_position="LATEST")
    checkpoint = tmp_path / "checkpoint"
    frame = read_kinesis(spark, cfg, str(checkpoint))
    first = events(60, start=40)
    put_lines(kinesis_endpoint, stream, first)
    read_by_failed_attempt: list[str] = []

    def fail_after_reading(batch: DataFrame, batch_id: int) -> None:
        read_by_failed_attempt.extend(data_of([row.asDict() for row in batch.collect()]))
        raise RuntimeError("the sink is down")

    query = (
        frame.writeStream.foreachBatch(fail_after_reading)
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    try:
        with pytest.raises(StreamingQueryException, match="the sink is down"):
            query.awaitTermination(120)
    finally:
        query.stop()
    assert (checkpoint / "offsets" / "0").exists() and not (checkpoint / "commits" / "0").exists()
    restarted = read_kinesis(spark, cfg, str(checkpoint))
    later = events(30, start=100)  # records go on arriving
    put_lines(kinesis_endpoint, stream, later)

    batches = run_available_now(restarted, checkpoint)

    assert read_by_failed_attempt == first
    assert data_of(batches[0]) == first  # batch 0 again, exactly
    assert set(data_of([row for batch in batches for row in batch])) <= set(first + later)
