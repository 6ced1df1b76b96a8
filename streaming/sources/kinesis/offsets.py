"""Offsets of the Python Kinesis source: one position per shard, in a stable JSON form.

An offset is what Spark writes to the checkpoint's offset log for every micro-batch::

    {"shards": {"shardId-000000000000": "AFTER:4968...", "shardId-000000000001": "TRIM_HORIZON"},
     "startTimestampMs": null, "stream": "events", "version": 1}

Keys are sorted at every level, so the same offset always serialises to the same JSON (Spark compares
offsets by their JSON to decide whether there is new data). A shard position is one of

``TRIM_HORIZON``
    nothing read yet; start at the oldest record the shard still holds.
``AT_TIMESTAMP``
    nothing read yet; start at the first record that arrived at or after ``startTimestampMs``
    (``LATEST`` is pinned to such a timestamp when the query first starts, so a replay is exact).
``AFTER:<sequence number>``
    every record up to and including this sequence number has been read.
``SHARD_END``
    the shard is closed (split or merged) and has been read to its end; its children may start.

A batch covers, per shard, the records after its start position up to and including its end position,
so replaying a batch from the checkpoint reads exactly the records it read the first time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streaming.sources.kinesis.errors import KinesisSourceError

OFFSET_VERSION = 1

TRIM_HORIZON = "TRIM_HORIZON"
AT_TIMESTAMP = "AT_TIMESTAMP"
SHARD_END = "SHARD_END"
_AFTER = "AFTER:"


def after(sequence_number: str) -> str:
    """The position just past ``sequence_number``."""
    return f"{_AFTER}{sequence_number}"


def sequence_of(position: str) -> str | None:
    """The sequence number of an ``AFTER:`` position, else ``None``."""
    return position[len(_AFTER) :] if position.startswith(_AFTER) else None


def is_valid_position(position: Any) -> bool:
    if not isinstance(position, str):
        return False
    if position in (TRIM_HORIZON, AT_TIMESTAMP, SHARD_END):
        return True
    sequence = sequence_of(position)
    return sequence is not None and sequence.isdigit()


@dataclass(frozen=True)
class KinesisOffset:
    """Where the source stands in every shard it knows of."""

    stream: str
    shards: Mapping[str, str] = field(default_factory=dict)
    start_timestamp_ms: int | None = None

    def __post_init__(self) -> None:
        bad = {shard: pos for shard, pos in self.shards.items() if not is_valid_position(pos)}
        if bad:
            raise KinesisSourceError(f"invalid shard positions in offset of stream {self.stream!r}: {bad}")
        if AT_TIMESTAMP in self.shards.values() and self.start_timestamp_ms is None:
            raise KinesisSourceError(f"offset of stream {self.stream!r} has AT_TIMESTAMP without a timestamp")
        # A private, sorted copy: the offset cannot change under a caller, and serialises stably.
        object.__setattr__(self, "shards", dict(sorted(self.shards.items())))

    def with_shards(self, shards: Mapping[str, str]) -> KinesisOffset:
        return KinesisOffset(self.stream, shards, self.start_timestamp_ms)

    def to_dict(self) -> dict[str, Any]:
        """The offset as Spark stores it: plain JSON types, keys sorted at every level."""
        return {
            "shards": dict(sorted(self.shards.items())),
            "startTimestampMs": self.start_timestamp_ms,
            "stream": self.stream,
            "version": OFFSET_VERSION,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, stream: str | None = None) -> KinesisOffset:
        """Parse an offset read back from the checkpoint; ``stream`` must match when given."""
        if raw.get("version") != OFFSET_VERSION:
            raise KinesisSourceError(
                f"unsupported Kinesis offset version {raw.get('version')!r} (this source writes "
                f"{OFFSET_VERSION}); was the checkpoint written by another Kinesis source?"
            )
        found = raw.get("stream")
        if stream is not None and found != stream:
            raise KinesisSourceError(
                f"the checkpoint reads Kinesis stream {found!r} but the source is configured for {stream!r}; "
                "use a new checkpoint location for another stream"
            )
        shards = raw.get("shards")
        if not isinstance(found, str) or not isinstance(shards, Mapping):
            raise KinesisSourceError(f"malformed Kinesis offset: {raw!r}")
        timestamp = raw.get("startTimestampMs")
        return cls(found, dict(shards), None if timestamp is None else int(timestamp))

    @classmethod
    def from_json(cls, text: str, *, stream: str | None = None) -> KinesisOffset:
        return cls.from_dict(json.loads(text), stream=stream)


def timestamp_ms(text: str) -> int:
    """Epoch milliseconds of an ISO-8601 timestamp (no zone means UTC)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as e:
        raise KinesisSourceError(f"source.starting_timestamp {text!r} is not an ISO-8601 timestamp") from e
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
