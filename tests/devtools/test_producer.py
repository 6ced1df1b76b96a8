"""The Kinesis producer's batching and retrying, against ``botocore.stub.Stubber`` (the local server
never rejects entries, so partial failures need a stub)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from botocore.stub import Stubber

from devtools.producer import (
    MAX_BYTES_PER_CALL,
    ProducerError,
    RecordTooLargeError,
    batch_entries,
    create_stream,
    default_partition_key,
    send_lines,
)
from tests.kinesis_stub import stubbed_client


def accepted(count: int, shard: str = "shardId-000000000000") -> dict[str, Any]:
    return {"Records": [{"SequenceNumber": str(i + 1), "ShardId": shard} for i in range(count)]}


def entry(line: str, key: str) -> dict[str, Any]:
    return {"Data": line.encode(), "PartitionKey": key}


def test_calls_hold_at_most_500_records() -> None:
    entries = [entry(f"line {i}", "k") for i in range(1201)]

    assert [len(batch) for batch in batch_entries(entries)] == [500, 500, 201]


def test_calls_hold_at_most_5_mib() -> None:
    blob = "x" * (900 * 1024)  # 900 KiB: five fit in 5 MiB, six do not
    entries = [entry(blob, "k") for _ in range(12)]

    batches = list(batch_entries(entries))

    assert [len(batch) for batch in batches] == [5, 5, 2]
    assert all(
        sum(len(e["Data"]) + len(e["PartitionKey"]) for e in batch) <= MAX_BYTES_PER_CALL for batch in batches
    )


def test_record_over_1_mib_is_refused() -> None:
    with pytest.raises(RecordTooLargeError, match="exceeds"):
        list(batch_entries([entry("x" * (1024 * 1024), "k")]))


def test_partition_key_is_the_user_then_the_session_then_a_hash() -> None:
    assert default_partition_key(json.dumps({"user_id": "u-1", "session_id": "s-1"})) == "u-1"
    assert default_partition_key(json.dumps({"user_id": None, "session_id": "s-1"})) == "s-1"
    assert default_partition_key("not json {") == hashlib.md5(b"not json {").hexdigest()
    assert default_partition_key("[1, 2]") == hashlib.md5(b"[1, 2]").hexdigest()


def test_only_rejected_entries_are_sent_again() -> None:
    lines = [json.dumps({"user_id": f"u{i}", "n": i}) for i in range(4)]
    client = stubbed_client()
    sleeps: list[float] = []
    with Stubber(client) as stub:
        stub.add_response(
            "put_records",
            {
                "FailedRecordCount": 2,
                "Records": [
                    {"SequenceNumber": "1", "ShardId": "shardId-000000000000"},
                    {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"},
                    {"SequenceNumber": "2", "ShardId": "shardId-000000000001"},
                    {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"},
                ],
            },
            {"StreamName": "events", "Records": [entry(line, f"u{i}") for i, line in enumerate(lines)]},
        )
        stub.add_response(
            "put_records",
            accepted(2),
            {"StreamName": "events", "Records": [entry(lines[1], "u1"), entry(lines[3], "u3")]},
        )

        report = send_lines(lines, stream="events", client=client, progress=False, sleep=sleeps.append)

        stub.assert_no_pending_responses()
    assert (report.records, report.calls, report.retried) == (4, 2, 2)
    assert len(sleeps) == 1
    assert report.per_shard == {"shardId-000000000000": 3, "shardId-000000000001": 1}


def test_entries_still_rejected_after_the_last_attempt_fail_the_send() -> None:
    client = stubbed_client()
    rejected = {
        "FailedRecordCount": 1,
        "Records": [{"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"}],
    }
    with Stubber(client) as stub:
        for _ in range(3):
            stub.add_response("put_records", rejected)

        with pytest.raises(ProducerError, match=r"1 records were still rejected.*after 3 attempts"):
            send_lines(
                ["a"], stream="events", client=client, max_attempts=3, progress=False, sleep=lambda _: None
            )


def test_missing_stream_fails_without_retrying() -> None:
    client = stubbed_client()
    with Stubber(client) as stub:
        stub.add_client_error(
            "put_records", service_error_code="ResourceNotFoundException", http_status_code=400
        )

        with pytest.raises(ProducerError, match="'events'"):
            send_lines(["a"], stream="events", client=client, progress=False, sleep=lambda _: None)
        stub.assert_no_pending_responses()


def test_rate_spreads_calls_over_time() -> None:
    client = stubbed_client()
    sleeps: list[float] = []
    with Stubber(client) as stub:
        for _ in range(4):
            stub.add_response("put_records", accepted(5))

        report = send_lines(
            [f"line {i}" for i in range(20)],
            stream="events",
            client=client,
            rate=25,
            progress=False,
            sleep=sleeps.append,
        )

    assert report.calls == 4  # 25 records/s in calls of 5: five calls a second
    # The fake sleep lets no time pass: each later call waits for its slot, 0.2 s apart.
    assert sleeps == pytest.approx([0.2, 0.4, 0.6], abs=0.05)


def test_create_stream_waits_until_active_and_accepts_an_existing_stream() -> None:
    client = stubbed_client()
    summary = {
        "StreamName": "events",
        "StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/events",
        "RetentionPeriodHours": 24,
        "StreamCreationTimestamp": 0,
        "EnhancedMonitoring": [],
        "OpenShardCount": 2,
    }
    with Stubber(client) as stub:
        stub.add_client_error(
            "create_stream", service_error_code="ResourceInUseException", http_status_code=400
        )
        stub.add_response(
            "describe_stream_summary", {"StreamDescriptionSummary": {**summary, "StreamStatus": "UPDATING"}}
        )
        stub.add_response(
            "describe_stream_summary", {"StreamDescriptionSummary": {**summary, "StreamStatus": "ACTIVE"}}
        )

        create_stream("events", 2, client=client, timeout=5)

        stub.assert_no_pending_responses()
