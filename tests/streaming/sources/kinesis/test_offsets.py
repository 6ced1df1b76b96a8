from __future__ import annotations

import json

import pytest

from streaming.sources.kinesis.errors import KinesisSourceError
from streaming.sources.kinesis.offsets import (
    AT_TIMESTAMP,
    SHARD_END,
    TRIM_HORIZON,
    KinesisOffset,
    after,
    sequence_of,
    timestamp_ms,
)

SEQUENCE = "49680517456745688574254121222123312209169571335647526914"


def test_offset_survives_a_json_round_trip() -> None:
    shards = {"shardId-000000000002": TRIM_HORIZON, "shardId-000000000000": after(SEQUENCE), "x": SHARD_END}
    offset = KinesisOffset("events", shards)

    assert KinesisOffset.from_json(offset.to_json(), stream="events") == offset
    assert KinesisOffset.from_dict(json.loads(json.dumps(offset.to_dict()))) == offset


def test_offset_json_has_sorted_keys_whatever_the_input_order() -> None:
    one = KinesisOffset("events", {"b": TRIM_HORIZON, "a": SHARD_END}, None)
    other = KinesisOffset("events", {"a": SHARD_END, "b": TRIM_HORIZON}, None)

    # Spark compares offsets by the JSON of the dict the reader returns (json.dumps without sort_keys).
    assert json.dumps(one.to_dict()) == json.dumps(other.to_dict())
    assert json.dumps(one.to_dict()) == json.dumps(one.to_dict(), sort_keys=True)


def test_at_timestamp_positions_carry_the_pinned_timestamp() -> None:
    offset = KinesisOffset("events", {"shardId-0": AT_TIMESTAMP}, 1_700_000_000_123)

    assert KinesisOffset.from_json(offset.to_json()).start_timestamp_ms == 1_700_000_000_123
    with pytest.raises(KinesisSourceError, match="without a timestamp"):
        KinesisOffset("events", {"shardId-0": AT_TIMESTAMP})


def test_after_position_names_its_sequence_number() -> None:
    assert sequence_of(after(SEQUENCE)) == SEQUENCE
    assert sequence_of(TRIM_HORIZON) is None


@pytest.mark.parametrize("position", ["LATEST", "AFTER:", "AFTER:12x", 42])
def test_invalid_position_is_refused(position: object) -> None:
    with pytest.raises(KinesisSourceError, match="invalid shard positions"):
        KinesisOffset("events", {"shardId-0": position})  # type: ignore[dict-item]


def test_offset_of_another_stream_is_refused() -> None:
    text = KinesisOffset("clicks", {"shardId-0": TRIM_HORIZON}).to_json()

    with pytest.raises(KinesisSourceError, match=r"'clicks'.*'events'"):
        KinesisOffset.from_json(text, stream="events")


def test_offset_of_another_format_is_refused() -> None:
    connector_offset = {"metadata": {"streamName": "events", "batchId": "3"}}

    with pytest.raises(KinesisSourceError, match="unsupported Kinesis offset version"):
        KinesisOffset.from_dict(connector_offset)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T00:00:00Z", 1_704_067_200_000),
        ("2024-01-01T00:00:00.250+00:00", 1_704_067_200_250),
        ("2024-01-01T01:00:00+01:00", 1_704_067_200_000),
        ("2024-01-01T00:00:00", 1_704_067_200_000),
    ],
)
def test_starting_timestamp_is_read_as_iso_8601(text: str, expected: int) -> None:
    assert timestamp_ms(text) == expected
