"""The validator against the independent oracle on thousands of generated records.

Each record is a valid event with one to three fields changed to a value of another JSON type, a
boundary length or an event-time form, and now and then its text cut short or followed by more text.
The validator's reasons, and the typed event of a valid record, must be the oracle's. The generator
stays inside what the oracle models: no duplicate keys, NaN, unpaired surrogates or integers beyond 64
bits (tests/streaming/test_parse.py and test_parse_edges.py pin those by hand), and no year 0000 with an
offset that lands on 0001-01-01 UTC (a stored instant, which Python's datetime cannot build locally).
"""

from __future__ import annotations

import json
import random
from datetime import UTC, timedelta
from typing import Any

from pyspark.sql import functions as F

from streaming.parse import parse_events
from tests.oracle import EPOCH, classify
from tests.streaming.test_parse import BASE, INGEST, raw_frame

RECORDS = 3000
_ABSENT = object()
_MAX_LONG = 2**63 - 1
_MIN_MS, _MAX_MS = -62_135_596_800_000, 253_402_300_799_999

_ANY = [_ABSENT, None, "", "x", "x" * 128, "x" * 129, "é" * 64, "é" * 65, "日本" * 21, "日本" * 22, 0, -1, 7,
        _MAX_LONG, -_MAX_LONG - 1, 1.5, 1.0, 1e3, True, False, [], ["a"], {}, {"a": 1}]  # fmt: skip
_CHOICES = {
    "event_type": ["impression", "click", "play_start", "progress", "complete", "Progress", "view"],
    "platform": ["web", "WEB", "Ios", "android", "tv", "fridge", "wéb"],
    "watch_ms": [0, 1500, -1, _MAX_LONG, "100", 1.5],
    "event_time": [
        "2026-11-01T10:00:00Z", "2026-11-01T10:00:00.1Z", "2026-11-01T10:00:00.123456789+05:30",
        "2026-11-01T10:00:00.1234567890Z", "2026-11-01T10:00:00-00:00", "2026-11-01T10:00:00+23:59",
        "2026-11-01T10:00:00+24:00", "2026-11-01T10:00:00+05:60", "2026-11-01T24:00:00Z",
        "2026-11-01T10:60:00Z", "2026-11-01T10:00:60Z", "2024-02-29T00:00:00Z", "2026-02-29T00:00:00Z",
        "2026-13-01T00:00:00Z", "2026-11-01t10:00:00z", "2026-11-01 10:00:00Z", "2026-11-01T10:00Z",
        "2026-11-01T10:00:00", "2026-11-01T10:00:00.Z", "0001-01-01T00:00:00Z",
        "0001-01-01T00:30:00+01:00", "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:59:59-00:01", "2026-11-02T12:59:59Z", "2026-11-02T13:00:00.000001Z",
        "2026-11-01T10:00:00Z\n", " 2026-11-01T10:00:00Z", "\uff11\uff19\uff17\uff10-01-01T00:00:00Z",
        1_762_000_000_000, 0, -1, _MIN_MS, _MIN_MS - 1, _MAX_MS, _MAX_MS + 1, 1_762_092_000_000,
        1_762_092_000_001, "1762000000000",
    ],
}  # fmt: skip
_FIELDS = [
    "event_id", "event_type", "event_time", "content_id", "affiliate_id", "platform", "user_id", "watch_ms",
    "session_id", "placement", "country", "app_version", "schema_version",
]  # fmt: skip
_TAILS = ["", "", " ", "\t", "}", "]", " x", ", {}", " {}", "\u0000", "\u00a0"]


def _record(rng: random.Random) -> str:
    event: dict[str, Any] = dict(BASE)
    if rng.random() < 0.3:
        event["event_type"] = rng.choice(["progress", "complete"])
        event["watch_ms"] = 10
    for name in rng.sample(_FIELDS, rng.randint(1, 3)):
        values = _CHOICES.get(name, []) + _ANY if rng.random() < 0.5 else _ANY
        value = rng.choice(values)
        if value is _ABSENT:
            event.pop(name, None)
        else:
            event[name] = value
    if rng.random() < 0.2:
        event = {"extra": rng.choice(_ANY[1:]), **event, "nested": {"event_id": 5, "list": [1, {"a": None}]}}
    separators = rng.choice([(",", ":"), (", ", ": ")])
    text = json.dumps(event, ensure_ascii=rng.random() < 0.5, separators=separators)
    roll = rng.random()
    if roll < 0.05:
        text = text[: rng.randrange(1, len(text))]
    elif roll < 0.15:
        text += rng.choice(_TAILS)
    elif roll < 0.17:
        text = rng.choice(["[1, 2]", '"text"', "42", "null", "true", "[]", "{}", " {} ", "[{}]"])
    return text


def test_the_validator_agrees_with_the_oracle_on_generated_records(spark):
    rng = random.Random(20261130)
    records = sorted({_record(rng) for _ in range(RECORDS)})
    records = [r for r in records if r.strip()]  # a blank line is not a record
    skew = timedelta(hours=1)
    parsed = parse_events(raw_frame(spark, *records), skew)
    # as epoch microseconds: Python's datetime cannot hold every instant near the range's ends in local time
    rows = parsed.withColumn("event_time", F.unix_micros("event_time")).collect()
    got = {row.raw: row for row in rows}
    assert len(got) == len(records)
    now = INGEST.replace(tzinfo=UTC)
    disagreements = []
    for record in records:
        event, reasons = classify(record, now, skew)
        row = got[record]
        if sorted(row.reasons) != reasons:
            disagreements.append((record, sorted(row.reasons), reasons))
        elif event is not None:
            typed = {name: row[name] for name in event}
            expected = {**event, "event_time": (event["event_time"] - EPOCH) // timedelta(microseconds=1)}
            if typed != expected:
                disagreements.append((record, typed, expected))
    assert not disagreements, f"{len(disagreements)} of {len(records)} differ, e.g. {disagreements[:5]}"
    valid = sum(not row.reasons for row in rows)
    assert 200 < valid < len(records) - 200, f"{valid} valid of {len(records)}: want both kinds"
