"""Throttling and pacing. Kinesis throttling cannot be provoked on the local server, so these tests use
``botocore.stub.Stubber`` on a real boto3 client, and a clock that moves only when something waits."""

from __future__ import annotations

import random
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber

from streaming.sources.kinesis.client import (
    GET_RECORDS_PER_SECOND,
    RetryPolicy,
    ShardPacer,
    call_with_retries,
)
from streaming.sources.kinesis.errors import KinesisThrottledError
from streaming.sources.kinesis.offsets import TRIM_HORIZON, KinesisOffset
from streaming.sources.kinesis.shards import FetchSettings, StreamFetcher
from tests.kinesis_stub import stubbed_client
from tests.streaming.sources.kinesis.quota import GET_RECORDS_QUOTA, busiest_second

SHARD = "shardId-000000000000"


class FakeTime:
    """A monotonic clock that moves only when something sleeps or a call takes time."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def throttled(code: str = "ProvisionedThroughputExceededException") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "Rate exceeded for shard"}}, "GetRecords")


def test_throttled_call_is_retried_with_capped_exponential_backoff() -> None:
    outcomes: list[Any] = [throttled(), throttled("LimitExceededException"), throttled(), throttled(), "ok"]
    sleeps: list[float] = []

    def operation() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    policy = RetryPolicy(max_retries=5, base_delay=0.1, max_delay=0.5)
    result = call_with_retries(operation, what="Get", policy=policy, sleep=sleeps.append, draw=lambda: 1.0)

    assert result == "ok"
    assert sleeps == pytest.approx([0.1, 0.2, 0.4, 0.5])


def test_jitter_spreads_each_wait_below_its_cap() -> None:
    policy = RetryPolicy(max_retries=3, base_delay=0.1, max_delay=1.0)

    assert policy.delay(2, draw=lambda: 0.25) == pytest.approx(0.1)
    assert policy.delay(10, draw=lambda: 0.5) == pytest.approx(0.5)


def test_throttling_beyond_max_retries_raises_a_named_error() -> None:
    calls = 0

    def operation() -> None:
        nonlocal calls
        calls += 1
        raise throttled()

    with pytest.raises(KinesisThrottledError, match="still throttled") as raised:
        call_with_retries(operation, what="Get", policy=RetryPolicy(max_retries=3), sleep=lambda _: None)

    assert calls == 4
    assert isinstance(raised.value.__cause__, ClientError)


def test_other_errors_are_not_retried() -> None:
    calls = 0

    def operation() -> None:
        nonlocal calls
        calls += 1
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetRecords")

    with pytest.raises(ClientError, match="AccessDeniedException"):
        call_with_retries(operation, what="Get", policy=RetryPolicy(max_retries=3), sleep=lambda _: None)
    assert calls == 1


def test_fetch_retries_a_throttled_shard_then_fails_with_a_named_error() -> None:
    client = stubbed_client()
    time = FakeTime()
    settings = FetchSettings("events", retry=RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.02))
    fetcher = StreamFetcher(settings, client, sleep=time.sleep, clock=time.clock)
    with Stubber(client) as stub:
        stub.add_response("list_shards", {"Shards": [_shard(SHARD)]}, {"StreamName": "events"})
        stub.add_response(
            "get_shard_iterator",
            {"ShardIterator": "iterator-1"},
            {"StreamName": "events", "ShardId": SHARD, "ShardIteratorType": TRIM_HORIZON},
        )
        for _ in range(3):
            stub.add_client_error(
                "get_records",
                service_error_code="ProvisionedThroughputExceededException",
                service_message="Rate exceeded for shard shardId-000000000000",
                http_status_code=400,
                expected_params={"ShardIterator": "iterator-1", "Limit": ANY},
            )

        with pytest.raises(KinesisThrottledError, match=r"shardId-000000000000.*after 2 retries"):
            fetcher.fetch(KinesisOffset("events", {SHARD: TRIM_HORIZON}))
        stub.assert_no_pending_responses()
    # Each retry waited for its backoff and for its turn on the shard: 3 attempts, 0.2 s apart.
    assert time.now - 100.0 == pytest.approx(0.4)


def test_pacer_spaces_calls_a_fifth_of_a_second_apart_or_by_the_bytes_they_returned() -> None:
    time = FakeTime()
    pacer = ShardPacer(clock=time.clock, sleep=time.sleep)

    pacer.call(lambda: "answer", lambda _: 1000)  # the first call goes at once
    pacer.call(lambda: "answer", lambda _: 10_000_000)  # a 10 MB answer
    pacer.call(lambda: "answer", lambda _: 0)

    assert time.sleeps == pytest.approx([0.2, 5.0])


def test_pacer_does_not_wait_past_a_deadline() -> None:
    time = FakeTime(0.0)
    pacer = ShardPacer(clock=time.clock, sleep=lambda _: pytest.fail("must not sleep"))
    pacer.call(lambda: "answer", lambda _: 4_000_000)

    assert pacer.wait(deadline=1.0) is False


def test_pacer_allows_the_whole_quota_when_answers_are_instant() -> None:
    time = FakeTime(0.0)
    pacer = ShardPacer(clock=time.clock, sleep=time.sleep)
    started: list[float] = []

    for _ in range(26):
        pacer.call(lambda: started.append(time.now), lambda _: 0)

    assert started[-1] == pytest.approx(5.0)  # 5 calls a second, no slower
    assert busiest_second(started) == GET_RECORDS_QUOTA


@pytest.mark.parametrize("calls_per_second", [GET_RECORDS_PER_SECOND, 2, 1])
def test_pacer_keeps_every_second_the_server_may_count_within_the_rate(calls_per_second: int) -> None:
    """Whatever the latency, and counting failed attempts: the server counts a call at some moment
    between its request and its answer, and no choice of those moments puts more than the rate into
    any one-second window."""
    time = FakeTime()
    draw = random.Random(9)
    pacer = ShardPacer(calls_per_second, clock=time.clock, sleep=time.sleep)
    spans: list[tuple[float, float]] = []

    def get_records() -> str:
        sent = time.now
        time.now += draw.choice([0.0, 0.002, 0.03, 0.19, 0.4, 0.95, 1.7])
        spans.append((sent, time.now))
        if draw.random() < 0.2:
            raise throttled()
        return "answer"

    for _ in range(400):
        try:
            pacer.call(get_records, lambda _: draw.choice([0, 1000, 400_000]))
        except ClientError:
            pass

    assert len(spans) == 400
    assert busiest_second(spans) <= calls_per_second


def test_fetcher_alone_never_exceeds_the_quota_on_a_shard() -> None:
    """A reader polling a shard at the tip of the stream, one fetch after another, as Spark's triggers
    make it: calls that take time, throttled ones retried, an iterator that expires."""
    time = FakeTime()
    draw = random.Random(4)
    spans: list[tuple[float, float]] = []

    class Kinesis:
        """Answers like a shard that gets a few records now and then."""

        def list_shards(self, **_: Any) -> dict[str, Any]:
            return {"Shards": [_shard(SHARD)]}

        def get_shard_iterator(self, **_: Any) -> dict[str, Any]:
            return {"ShardIterator": "iterator"}

        def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
            sent = time.now
            time.now += draw.choice([0.001, 0.01, 0.08, 0.3])
            spans.append((sent, time.now))
            outcome = draw.random()
            if outcome < 0.1:
                raise throttled()
            if outcome < 0.12:
                raise ClientError({"Error": {"Code": "ExpiredIteratorException", "Message": "old"}}, "Get")
            count = draw.choice([0, 0, 0, 3])
            records = [
                {"SequenceNumber": str(len(spans) * 10 + i), "Data": b"{}", "PartitionKey": "k",
                 "ApproximateArrivalTimestamp": time.now}
                for i in range(count)
            ]  # fmt: skip
            return {"Records": records, "NextShardIterator": "iterator", "MillisBehindLatest": 0}

    settings = FetchSettings("events", retry=RetryPolicy(max_retries=20, base_delay=0.001, max_delay=0.05))
    fetcher = StreamFetcher(settings, Kinesis(), sleep=time.sleep, clock=time.clock, wall=time.clock)
    offset = KinesisOffset("events", {SHARD: TRIM_HORIZON})
    while len(spans) < 300:
        _, offset = fetcher.fetch(offset)

    assert busiest_second(spans) <= GET_RECORDS_QUOTA


def _shard(shard_id: str) -> dict[str, Any]:
    return {
        "ShardId": shard_id,
        "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": str(2**128 - 1)},
        "SequenceNumberRange": {"StartingSequenceNumber": "1"},
    }
