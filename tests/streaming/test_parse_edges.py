"""Edges of the event contract that tests/streaming/test_parse.py leaves out."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from streaming.parse import parse_events, valid_events
from tests.oracle import classify
from tests.streaming.test_parse import BASE as VALID
from tests.streaming.test_parse import raw_frame


def line(**changes: Any) -> str:
    return json.dumps({**VALID, **changes})


def parse(spark, *values: str):
    return parse_events(raw_frame(spark, *values), timedelta(hours=1))


def reasons_of(spark, value: str) -> list[str]:
    (row,) = parse(spark, value).collect()
    return sorted(row.reasons)


@pytest.mark.parametrize(
    "record",
    [
        line()[:-1] + ', "event_id": "e2"}',
        line()[:-1] + ', "extra": 1, "extra": 2}',
        line()[:-1] + ', "extra": {"a": 1, "a": 2}}',
    ],
    ids=["contract field", "unknown field", "nested"],
)
def test_a_duplicate_key_anywhere_makes_the_record_malformed(spark, record):
    assert reasons_of(spark, record) == ["malformed_json"]


@pytest.mark.parametrize(
    "record",
    [line() + "]", line() + "] x", line() + '],[{"event_id": "e2"}', line() + " ] ", "[1]]", "1]"],
)
def test_trailing_text_after_a_closing_bracket_is_malformed(spark, record):
    assert reasons_of(spark, record) == ["malformed_json"] == classify(record, datetime.now().astimezone())[1]


def test_brackets_inside_the_record_are_not_trailing_text(spark):
    record = line(note="a]b", tags=["x]", ["y"]])
    assert reasons_of(spark, record) == []


@pytest.mark.parametrize("blank", ["\t", " \t ", "\u00a0"], ids=["tab", "spaces and tab", "no-break space"])
def test_a_line_of_whitespace_is_not_a_record(spark, blank):
    assert parse(spark, blank, line()).count() == 1


@pytest.mark.parametrize("event_time", ["0000-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00"])
def test_an_instant_outside_years_1_to_9999_is_a_bad_event_time(spark, event_time):
    assert reasons_of(spark, line(event_time=event_time)) == ["bad_event_time"]


def test_a_string_that_looks_like_a_number_is_a_string(spark):
    events = valid_events(parse(spark, line(event_id="42", content_id="1.5", user_id="true")))
    assert [(e.event_id, e.content_id, e.user_id) for e in events.collect()] == [("42", "1.5", "true")]


@pytest.mark.parametrize(
    "ids",
    [
        {"user_id": "é" * 64, "content_id": "😀" * 32},
        {"affiliate_id": "é" * 63 + "x" * 3},
        {"event_id": "\ud800" * 128},
        {"event_id": "\ud800" * 129},
    ],
    ids=["128 bytes", "129 bytes", "128 unpaired surrogates", "129 unpaired surrogates"],
)
def test_ids_are_limited_by_utf8_bytes_as_the_oracle_counts_them(spark, ids):
    record = line(**ids)
    assert reasons_of(spark, record) == classify(record, datetime.now().astimezone())[1]


def test_the_accepted_platforms_and_event_types_are_parameters(spark):
    records = [line(platform="Roku"), line(event_type="share"), line(platform="web")]
    parsed = parse_events(
        raw_frame(spark, *records),
        timedelta(hours=1),
        event_types=("impression", "share"),
        platforms=("roku", "tv"),
    )
    reasons = {(r.platform, r.event_type): sorted(r.reasons) for r in parsed.collect()}
    assert reasons == {
        ("roku", "impression"): [],
        ("web", "share"): ["unknown_platform"],  # a configured event type; web is no longer listed
        ("web", "impression"): ["unknown_platform"],
    }
