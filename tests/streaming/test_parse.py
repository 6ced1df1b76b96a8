from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual

from streaming.parse import parse_events, quarantined, valid_events
from streaming.schema import EVENT_SCHEMA, QUARANTINE_SCHEMA, RAW_SCHEMA

INGEST = datetime(2026, 11, 2, 12, 0)
BASE = {
    "event_id": "e1",
    "event_type": "impression",
    "event_time": "2026-11-01T10:00:00Z",
    "content_id": "c1",
    "affiliate_id": "a1",
    "platform": "web",
    "user_id": "u1",
}


def raw_frame(spark, *values: str):
    return spark.createDataFrame([(v, "file:///in/x.json", INGEST) for v in values], RAW_SCHEMA)


def reasons_of(spark, *values: str) -> list[list[str]]:
    parsed = parse_events(raw_frame(spark, *values), timedelta(hours=1))
    return [sorted(r.reasons) for r in parsed.orderBy("raw").collect()]


def line(**changes) -> str:
    event = {**BASE, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not _ABSENT})


_ABSENT = object()


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ("{not json", ["malformed_json"]),
        ("[1, 2]", ["not_an_object"]),
        ('"just a string"', ["not_an_object"]),
        (line(event_id=_ABSENT), ["missing_field:event_id"]),
        (line(user_id=None), ["missing_field:user_id"]),
        (line(content_id=42), ["wrong_type:content_id"]),
        (line(affiliate_id=""), ["bad_length:affiliate_id"]),
        (line(event_id="x" * 129), ["bad_length:event_id"]),
        (line(user_id="é" * 65), ["bad_length:user_id"]),
        (line(content_id="😀" * 33), ["bad_length:content_id"]),
        (line(event_type="hover"), ["unknown_event_type"]),
        (line(event_type=3), ["wrong_type:event_type"]),
        (line(platform="fridge"), ["unknown_platform"]),
        (line(platform=_ABSENT), ["missing_field:platform"]),
        (line(event_time="yesterday"), ["bad_event_time"]),
        (line(event_time="2026-11-01 10:00:00"), ["bad_event_time"]),
        (line(event_time="2026-02-30T10:00:00Z"), ["bad_event_time"]),
        (line(event_time=1.5e12), ["wrong_type:event_time"]),
        (line(event_time=True), ["wrong_type:event_time"]),
        (line(event_time=10**20), ["wrong_type:event_time"]),
        ('{"event_id": "a"}}', ["malformed_json"]),
        ('{"event_id": "a"} trailing', ["malformed_json"]),
        ('{"event_id": "a"}, {"event_id": "b"}', ["malformed_json"]),
        (line(event_time="1762000000000"), ["bad_event_time"]),
        (line(event_time=_ABSENT), ["missing_field:event_time"]),
        (line(event_time="2099-01-01T00:00:00Z"), ["event_time_in_future"]),
        (line(event_type="progress"), ["bad_watch_ms"]),
        (line(event_type="complete", watch_ms=-5), ["bad_watch_ms"]),
        (line(event_type="progress", watch_ms="100"), ["bad_watch_ms"]),
        (line(event_type="progress", watch_ms=1.5), ["bad_watch_ms"]),
        (line(session_id=7), ["wrong_type:session_id"]),
        (line(schema_version="2"), ["wrong_type:schema_version"]),
        (
            line(event_id=_ABSENT, platform="fridge", event_time="nope"),
            ["bad_event_time", "missing_field:event_id", "unknown_platform"],
        ),
    ],
)
def test_each_invalid_record_gets_its_reasons(spark, record, expected):
    assert reasons_of(spark, record) == [expected]


def test_valid_event_with_extras_and_ignored_watch_ms_has_no_reasons(spark):
    record = line(extra_field={"x": 1}, watch_ms=-3, platform="IoS", schema_version=2)
    assert reasons_of(spark, record) == [[]]


def test_blank_lines_are_not_records(spark):
    parsed = parse_events(raw_frame(spark, "", "   ", line()), timedelta(hours=1))
    assert parsed.count() == 1


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        ("2026-11-01T10:00:00Z", datetime(2026, 11, 1, 10, 0, 0)),
        ("2026-11-01T12:30:00+02:30", datetime(2026, 11, 1, 10, 0, 0)),
        ("2026-11-01T05:00:00-05:00", datetime(2026, 11, 1, 10, 0, 0)),
        ("2026-11-01T10:00:00.5Z", datetime(2026, 11, 1, 10, 0, 0, 500000)),
        ("2026-11-01T10:00:00.123456Z", datetime(2026, 11, 1, 10, 0, 0, 123456)),
        ("2026-11-01T10:00:00.123456789+00:00", datetime(2026, 11, 1, 10, 0, 0, 123456)),
        (1793527200000, datetime(2026, 11, 1, 10, 0, 0)),
        (1793527200123, datetime(2026, 11, 1, 10, 0, 0, 123000)),
    ],
)
def test_every_event_time_encoding_is_stored_as_utc(spark, encoded, expected):
    events = valid_events(parse_events(raw_frame(spark, line(event_time=encoded)), timedelta(hours=1)))
    assert [r.event_time for r in events.collect()] == [expected]


def test_valid_events_are_typed_and_normalised(spark):
    record = line(event_type="progress", watch_ms=1500, platform="ANDROID", placement="hero")
    events = valid_events(parse_events(raw_frame(spark, record), timedelta(hours=1)))
    expected = spark.createDataFrame(
        [
            Row(
                event_id="e1",
                event_type="progress",
                event_time=datetime(2026, 11, 1, 10),
                content_id="c1",
                affiliate_id="a1",
                platform="android",
                user_id="u1",
                watch_ms=1500,
                session_id=None,
                placement="hero",
                country=None,
                app_version=None,
                schema_version=1,
                source="file:///in/x.json",
                ingest_time=INGEST,
            )
        ],
        EVENT_SCHEMA,
    )
    assertDataFrameEqual(events, expected)


def test_quarantine_keeps_raw_text_reasons_and_source(spark):
    bad = line(platform="fridge")
    rows = quarantined(parse_events(raw_frame(spark, bad, line()), timedelta(hours=1)))
    expected = spark.createDataFrame(
        [(bad, ["unknown_platform"], "file:///in/x.json", INGEST)], QUARANTINE_SCHEMA
    )
    assertDataFrameEqual(rows, expected)


ORIGINAL = datetime(2026, 11, 1, 9, 15, 0, 123456)


def replayed_line(**changes) -> str:
    """A record as `mediapulse quarantine replay` writes it: led by the reference to its original."""
    reference = {"replay": "r1", "source": "file:///in/first.json", "ingest_time_us": 1793524500123456}
    return '{"_mediapulse_replay":' + json.dumps(reference) + "," + line(**changes)[1:]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("file:///in/mediapulse-replay/r1/part-00000.json", ("file:///in/first.json", ORIGINAL)),
        ("file:///in/x.json", ("file:///in/x.json", INGEST)),  # no other record can claim another source
    ],
)
def test_a_replayed_record_keeps_its_original_source_and_ingest_time(spark, source, expected):
    raw = spark.createDataFrame([(replayed_line(), source, INGEST)], RAW_SCHEMA)
    parsed = parse_events(raw, timedelta(hours=1))
    assert [(r.source, r.ingest_time, r.arrival_time, r.reasons) for r in parsed.collect()] == [
        (*expected, INGEST, [])
    ]
