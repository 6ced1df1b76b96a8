"""Whether a run left a backlog, asked of the local Kinesis-API server after the run's end offset."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.streaming.sources.kinesis.conftest import put_lines
from tests.streaming.sources.kinesis.test_fetcher import drain, events, fetcher_for, wait_active

SHARD_0, SHARD_1, SHARD_2 = (f"shardId-00000000000{i}" for i in range(3))


def test_shards_with_unread_records_from_before_the_run_are_behind(
    kinesis_endpoint: str, make_stream: Callable[[int], str]
) -> None:
    stream = make_stream(2)
    # Keys user-0 and user-2 hash to different shards of two, so both hold records.
    put_lines(kinesis_endpoint, stream, events(400, users=3))
    fetcher = fetcher_for(kinesis_endpoint, stream, max_records_per_trigger=50)
    began = time.time()
    _, end = fetcher.fetch(fetcher.initial_offset())  # a bounded run: 50 of 400 rows

    behind = fetcher_for(kinesis_endpoint, stream).backlog(end, began)

    assert sorted(behind) == [SHARD_0, SHARD_1]
    assert all("arrived" in why for why in behind.values())


def test_a_drained_stream_is_not_behind(kinesis_endpoint: str, make_stream: Callable[[int], str]) -> None:
    stream = make_stream(2)
    put_lines(kinesis_endpoint, stream, events(300, users=3))
    fetcher = fetcher_for(kinesis_endpoint, stream)
    _, end = drain(fetcher, fetcher.initial_offset(), expected=300)

    assert fetcher_for(kinesis_endpoint, stream).backlog(end, time.time()) == {}


def test_records_that_arrived_after_the_run_began_are_left_to_the_next_run(
    kinesis_endpoint: str, make_stream: Callable[[int], str]
) -> None:
    """A stream written all the time must still let a drain end: what arrives during a run that read to
    the tip is not a backlog of that run."""
    stream = make_stream(1)
    put_lines(kinesis_endpoint, stream, events(100))
    fetcher = fetcher_for(kinesis_endpoint, stream)
    began = time.time()
    _, end = drain(fetcher, fetcher.initial_offset(), expected=100)
    put_lines(kinesis_endpoint, stream, events(20, start=100))
    probe = fetcher_for(kinesis_endpoint, stream)

    assert probe.backlog(end, began) == {}
    assert list(probe.backlog(end, time.time())) == [SHARD_0]


def test_children_born_after_the_run_count_from_their_oldest_record(
    kinesis: Any, kinesis_endpoint: str, make_stream: Callable[[int], str]
) -> None:
    stream = make_stream(1)
    put_lines(kinesis_endpoint, stream, events(50))
    fetcher = fetcher_for(kinesis_endpoint, stream)
    _, end = drain(fetcher, fetcher.initial_offset(), expected=50)
    kinesis.split_shard(StreamName=stream, ShardToSplit=SHARD_0, NewStartingHashKey=str(2**127))
    wait_active(kinesis, stream)
    put_lines(kinesis_endpoint, stream, events(60, users=3))

    # kinesalite dates records on a new child shard up to a second ahead (its creation time).
    behind = fetcher_for(kinesis_endpoint, stream).backlog(end, time.time() + 60)

    assert sorted(behind) == [SHARD_1, SHARD_2]  # the closed parent was read to its last record
