"""Throttling and pacing. Kinesis throttling cannot be provoked on the local server, so these tests use
``botocore.stub.Stubber`` on a real boto3 client."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber

from streaming.sources.kinesis.client import RetryPolicy, ShardPacer, call_with_retries
from streaming.sources.kinesis.errors import KinesisThrottledError
from streaming.sources.kinesis.offsets import TRIM_HORIZON, KinesisOffset
from streaming.sources.kinesis.shards import FetchSettings, StreamFetcher

SHARD = "shardId-000000000000"


def throttled(code: str = "ProvisionedThroughputExceededException") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "Rate exceeded for shard"}}, "GetRecords")


def stubbed_client() -> Any:
    return boto3.session.Session().client(
        "kinesis",
        region_name="us-east-1",
        aws_access_key_id="stub",
        aws_secret_access_key="stub",
        config=Config(retries={"total_max_attempts": 1}),
    )


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
    sleeps: list[float] = []
    settings = FetchSettings("events", retry=RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.02))
    fetcher = StreamFetcher(settings, client, sleep=sleeps.append)
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
    assert len(sleeps) == 2


def test_pacer_keeps_a_shard_within_five_calls_and_two_megabytes_a_second() -> None:
    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    pacer = ShardPacer(clock=lambda: now[0], sleep=sleep)
    assert pacer.wait()  # the first call goes at once
    pacer.spent(started=100.0, returned_bytes=1000)
    assert pacer.wait()
    pacer.spent(started=now[0], returned_bytes=10_000_000)  # a 10 MB answer
    assert pacer.wait()

    assert sleeps == pytest.approx([0.2, 5.0])


def test_pacer_does_not_wait_past_a_deadline() -> None:
    pacer = ShardPacer(clock=lambda: 0.0, sleep=lambda _: pytest.fail("must not sleep"))
    pacer.spent(started=0.0, returned_bytes=4_000_000)

    assert pacer.wait(deadline=1.0) is False


def _shard(shard_id: str) -> dict[str, Any]:
    return {
        "ShardId": shard_id,
        "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": str(2**128 - 1)},
        "SequenceNumberRange": {"StartingSequenceNumber": "1"},
    }
