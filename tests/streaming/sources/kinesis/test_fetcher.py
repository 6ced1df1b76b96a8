"""The Python source's reading engine against the local Kinesis-API server (no Spark)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa
import pytest
from aws_kinesis_agg.aggregator import RecordAggregator

from streaming.sources.kinesis.errors import KinesisDataLossError, StreamNotFoundError
from streaming.sources.kinesis.offsets import KinesisOffset, after, sequence_of
from streaming.sources.kinesis.shards import FetchSettings, StreamFetcher
from tests.streaming.sources.kinesis.conftest import REGION, put_lines
from tests.streaming.sources.kinesis.quota import GET_RECORDS_QUOTA, busiest_second


def events(count: int, users: int = 7, start: int = 0) -> list[str]:
    return [json.dumps({"user_id": f"user-{i % users}", "n": i}) for i in range(start, start + count)]


def fetcher_for(endpoint: str, stream: str, **settings: Any) -> StreamFetcher:
    return StreamFetcher(FetchSettings(stream, REGION, endpoint, **settings))


def drain(
    fetcher: StreamFetcher, offset: KinesisOffset, expected: int = 0, timeout: float = 20.0
) -> tuple[list[dict[str, Any]], KinesisOffset]:
    """Fetch until the offset stops moving with at least ``expected`` rows read (a closed shard may need
    a few polls to report its end); every row in the order the fetches returned them."""
    rows: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        batches, end = fetcher.fetch(offset)
        rows.extend(row for batch in batches for row in batch.to_pylist())
        if end == offset and len(rows) >= expected:
            return rows, end
        assert time.monotonic() < deadline, f"read {len(rows)} rows of {expected} within {timeout} s"
        offset = end


def rows_of(batches: Iterable[pa.RecordBatch]) -> list[dict[str, Any]]:
    return [row for batch in batches for row in batch.to_pylist()]


def lines_of(rows: list[dict[str, Any]]) -> list[str]:
    return [row["data"].decode() for row in rows]


def per_user(lines: list[str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for line in lines:
        grouped.setdefault(json.loads(line)["user_id"], []).append(line)
    return grouped


def wait_active(kinesis: Any, stream: str) -> None:
    deadline = time.monotonic() + 10
    while (
        kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
        != "ACTIVE"
    ):
        assert time.monotonic() < deadline, f"{stream} did not become ACTIVE"
        time.sleep(0.05)


def test_fetch_reads_every_record_once_in_order_per_shard(
    kinesis_endpoint: str, make_stream: Callable[[int], str]
) -> None:
    stream = make_stream(3)
    sent = events(300)
    put_lines(kinesis_endpoint, stream, sent)
    fetcher = fetcher_for(kinesis_endpoint, stream)

    rows, _ = drain(fetcher, fetcher.initial_offset())

    assert sorted(lines_of(rows)) == sorted(sent)
    assert per_user(lines_of(rows)) == per_user(sent)  # a user's events share a shard, kept in order
    assert {row["streamName"] for row in rows} == {stream}
    assert all(row["partitionKey"] == json.loads(row["data"])["user_id"] for row in rows)


def test_each_fetch_stays_within_max_records_per_trigger(
    kinesis_endpoint: str, make_stream: Callable[[int], str]
) -> None:
    stream = make_stream(3)
    put_lines(kinesis_endpoint, stream, events(100))
    fetcher = fetcher_for(kinesis_endpoint, stream, max_records_per_trigger=40)
    offset = fetcher.initial_offset()

    sizes = []
    while True:
        batches, end = fetcher.fetch(offset)
        if end == offset:
            break
        sizes.append(sum(batch.num_rows for batch in batches))
        offset = end

    assert sizes == [40, 40, 20]


def test_a_reader_keeps_every_shard_within_the_get_records_quota_as_the_server_counts(
    kinesis_endpoint: str,
    make_stream: Callable[[int], str],
    get_records_calls: Callable[[str], dict[str, list[float]]],
) -> None:
    """One reader fetching as often as Spark could ask: small fetches through a backlog, then polls at
    the tip, on every shard at once. The server's own log of GetRecords calls is the judge."""
    stream = make_stream(3)
    sent = events(240)
    put_lines(kinesis_endpoint, stream, sent)
    fetcher = fetcher_for(kinesis_endpoint, stream)
    offset = fetcher.initial_offset()
    rows: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while len(calls := get_records_calls(stream)) < 3 or min(map(len, calls.values())) < 30:
        assert time.monotonic() < deadline, f"too few GetRecords calls within 60 s: {calls}"
        batches, offset = fetcher.fetch(offset, max_rows=12)  # 4 records a call through the backlog
        rows.extend(rows_of(batches))

    assert sorted(lines_of(rows)) == sorted(sent)
    busiest = {shard: busiest_second(times) for shard, times in calls.items()}
    assert max(busiest.values()) <= GET_RECORDS_QUOTA, busiest


def test_replay_reads_exactly_the_records_of_the_batch(
    kinesis_endpoint: str, make_stream: Callable[[int], str]
) -> None:
    stream = make_stream(2)
    put_lines(kinesis_endpoint, stream, events(90))
    fetcher = fetcher_for(kinesis_endpoint, stream, max_records_per_trigger=50)
    start = fetcher.initial_offset()
    first, middle = fetcher.fetch(start)
    second, end = fetcher.fetch(middle)

    replayer = fetcher_for(kinesis_endpoint, stream)  # as a task would: a fresh reader with no memory
    assert rows_of(replayer.replay(middle, end)) == rows_of(second)
    assert rows_of(replayer.replay(start, middle)) == rows_of(first)
    assert len(rows_of(first)) == 50 and len(rows_of(second)) == 40


def test_shard_split_during_the_run_reads_parent_to_its_end_then_children(
    kinesis: Any, kinesis_endpoint: str, make_stream: Callable[[int], str]
) -> None:
    stream = make_stream(1)
    before, later = events(60), events(60, start=60)
    put_lines(kinesis_endpoint, stream, before)
    fetcher = fetcher_for(kinesis_endpoint, stream)
    read_before, offset = drain(fetcher, fetcher.initial_offset())

    kinesis.split_shard(
        StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**127)
    )
    wait_active(kinesis, stream)
    put_lines(kinesis_endpoint, stream, later)
    read_later, end = drain(fetcher, offset, expected=len(later))

    assert lines_of(read_before) == before
    assert sorted(lines_of(read_later)) == sorted(later)
    assert per_user(lines_of(read_before + read_later)) == per_user(before + later)
    assert end.shards["shardId-000000000000"] == "SHARD_END"
    assert sorted(end.shards) == ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"]


def test_records_of_a_split_parent_come_before_its_childrens(
    kinesis: Any, kinesis_endpoint: str, make_stream: Callable[[int], str]
) -> None:
    stream = make_stream(1)
    before, later = events(40), events(40, start=40)
    put_lines(kinesis_endpoint, stream, before)
    kinesis.split_shard(
        StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**127)
    )
    wait_active(kinesis, stream)
    put_lines(kinesis_endpoint, stream, later)
    fetcher = fetcher_for(kinesis_endpoint, stream)

    batches, _ = fetcher.fetch(fetcher.initial_offset())  # one fetch: parent, then (next round) children

    read = lines_of(rows_of(batches))
    assert read[:40] == before
    assert sorted(read[40:]) == sorted(later)


def test_merged_shards_are_read_before_their_child(
    kinesis: Any, kinesis_endpoint: str, make_stream: Callable[[int], str]
) -> None:
    stream = make_stream(2)
    before, later = events(50), events(50, start=50)
    put_lines(kinesis_endpoint, stream, before)
    kinesis.merge_shards(
        StreamName=stream, ShardToMerge="shardId-000000000000", AdjacentShardToMerge="shardId-000000000001"
    )
    wait_active(kinesis, stream)
    put_lines(kinesis_endpoint, stream, later)
    fetcher = fetcher_for(kinesis_endpoint, stream)

    rows, end = drain(fetcher, fetcher.initial_offset(), expected=len(before + later))

    assert sorted(lines_of(rows)) == sorted(before + later)
    assert per_user(lines_of(rows)) == per_user(before + later)
    assert end.shards == {
        "shardId-000000000000": "SHARD_END",
        "shardId-000000000001": "SHARD_END",
        "shardId-000000000002": end.shards["shardId-000000000002"],
    }


def test_kpl_aggregated_record_becomes_one_row_per_user_record(
    kinesis: Any, kinesis_endpoint: str, make_stream: Callable[[int], str]
) -> None:
    stream = make_stream(1)
    users = [(f"user-{i}", json.dumps({"user_id": f"user-{i}", "n": i}).encode()) for i in range(5)]
    aggregator = RecordAggregator()
    for key, data in users:
        assert aggregator.add_user_record(key, data) is None
    partition_key, explicit_hash_key, blob = aggregator.clear_and_get().get_contents()
    kinesis.put_record(StreamName=stream, Data=b"plain-before", PartitionKey="p")
    hash_key = {"ExplicitHashKey": explicit_hash_key} if explicit_hash_key else {}
    aggregated = kinesis.put_record(StreamName=stream, Data=blob, PartitionKey=partition_key, **hash_key)
    kinesis.put_record(StreamName=stream, Data=b"plain-after", PartitionKey="p")
    fetcher = fetcher_for(kinesis_endpoint, stream)

    rows, _ = drain(fetcher, fetcher.initial_offset())

    assert [(row["partitionKey"], row["data"]) for row in rows] == [
        ("p", b"plain-before"),
        *users,
        ("p", b"plain-after"),
    ]
    assert {row["sequenceNumber"] for row in rows[1:6]} == {aggregated["SequenceNumber"]}


def test_latest_is_pinned_to_the_time_of_the_first_offset(
    kinesis_endpoint: str, make_stream: Callable[[int], str]
) -> None:
    stream = make_stream(1)
    put_lines(kinesis_endpoint, stream, events(10))
    time.sleep(0.01)  # arrival times have millisecond precision: keep "before" strictly before the pin
    fetcher = fetcher_for(kinesis_endpoint, stream, starting_position="LATEST")
    start = fetcher.initial_offset()
    later = events(10, start=10)
    put_lines(kinesis_endpoint, stream, later)

    rows, end = drain(fetcher, start)

    assert lines_of(rows) == later
    replayed = [
        row for batch in fetcher_for(kinesis_endpoint, stream).replay(start, end) for row in batch.to_pylist()
    ]
    assert lines_of(replayed) == later


def older_sequence(sequence: str) -> str:
    """A sequence number of the same shard just before ``sequence`` that holds no record (kinesalite's
    layout: the 9 hex digits at [29:38] are the record's time in seconds)."""
    digits = format(int(sequence), "x")
    earlier = int(digits[29:38], 16) - 1
    return str(int(digits[:29] + format(earlier, "09x") + digits[38:], 16))


def test_expired_checkpoint_fails_the_query_loudly(
    kinesis: Any, kinesis_endpoint: str, make_stream: Callable[[int], str]
) -> None:
    stream = make_stream(1)
    first = kinesis.put_record(StreamName=stream, Data=b"first", PartitionKey="p")["SequenceNumber"]
    fetcher = fetcher_for(kinesis_endpoint, stream)
    # The checkpoint says a record that no longer exists was read last: what follows it may have expired.
    checkpoint = KinesisOffset(stream, {"shardId-000000000000": after(older_sequence(first))})

    with pytest.raises(KinesisDataLossError, match=r"shardId-000000000000.*expired.*fail_on_data_loss=false"):
        fetcher.fetch(checkpoint)


def test_expired_records_are_counted_and_logged_when_allowed(
    kinesis: Any, kinesis_endpoint: str, make_stream: Callable[[int], str], caplog: pytest.LogCaptureFixture
) -> None:
    stream = make_stream(1)
    first = kinesis.put_record(StreamName=stream, Data=b"first", PartitionKey="p")["SequenceNumber"]
    kinesis.put_record(StreamName=stream, Data=b"second", PartitionKey="p")
    fetcher = fetcher_for(kinesis_endpoint, stream, fail_on_data_loss=False)
    checkpoint = KinesisOffset(stream, {"shardId-000000000000": after(older_sequence(first))})

    with caplog.at_level(logging.WARNING, logger="streaming.sources.kinesis.shards"):
        rows, end = drain(fetcher, checkpoint)

    assert lines_of(rows) == ["first", "second"]
    assert fetcher.data_loss_events == 1
    assert "kinesis data loss" in caplog.text and "shardId-000000000000" in caplog.text
    assert sequence_of(end.shards["shardId-000000000000"]) is not None


def test_stream_that_does_not_exist_is_named(kinesis_endpoint: str) -> None:
    fetcher = fetcher_for(kinesis_endpoint, "no-such-stream")

    with pytest.raises(StreamNotFoundError, match="'no-such-stream' does not exist"):
        fetcher.initial_offset()
