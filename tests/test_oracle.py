from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.oracle import classify, expected, read_records, window_start

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def event(**changes: Any) -> dict[str, Any]:
    """A minimal valid progress event; a change to ``...`` removes the field."""
    body: dict[str, Any] = {
        "event_id": "e-1",
        "event_type": "progress",
        "event_time": "2026-11-01T10:00:00Z",
        "content_id": "vid-00001",
        "affiliate_id": "aff-001",
        "platform": "web",
        "user_id": "u-1",
        "watch_ms": 15_000,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def line(**changes: Any) -> str:
    return json.dumps(event(**changes))


def reasons_of(raw: str) -> list[str]:
    result, reasons = classify(raw, NOW)
    assert (result is None) == bool(reasons)
    return reasons


def test_minimal_event_is_valid_and_normalized() -> None:
    result, reasons = classify(line(platform="IOS", country="DE", extra={"ignored": True}), NOW)
    assert reasons == []
    assert result == {
        "event_id": "e-1",
        "event_type": "progress",
        "event_time": datetime(2026, 11, 1, 10, 0, tzinfo=UTC),
        "content_id": "vid-00001",
        "affiliate_id": "aff-001",
        "platform": "ios",
        "user_id": "u-1",
        "watch_ms": 15_000,
        "session_id": None,
        "placement": None,
        "country": "DE",
        "app_version": None,
        "schema_version": 1,
    }


@pytest.mark.parametrize("raw", ['{"event_id": "e-1", ', "{'event_id': 'e-1'}", "not json", "{}}"])
def test_unparseable_text_is_malformed_json(raw: str) -> None:
    assert reasons_of(raw) == ["malformed_json"]


@pytest.mark.parametrize("raw", ["[]", json.dumps([event()]), '"e-1"', "42", "null", "true"])
def test_json_that_is_not_an_object_is_rejected(raw: str) -> None:
    assert reasons_of(raw) == ["not_an_object"]


@pytest.mark.parametrize(
    "name", ["event_id", "event_type", "event_time", "content_id", "affiliate_id", "platform", "user_id"]
)
@pytest.mark.parametrize("absent", [..., None], ids=["absent", "null"])
def test_absent_or_null_required_field_is_missing(name: str, absent: Any) -> None:
    assert reasons_of(line(**{name: absent})) == [f"missing_field:{name}"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("event_id", 17),
        ("content_id", 12345),
        ("affiliate_id", ["aff-001"]),
        ("user_id", {"id": "u-1"}),
        ("event_type", 3),
        ("platform", True),
        ("event_time", 1793527200000.0),
        ("event_time", True),
        ("session_id", 99),
        ("placement", ["home"]),
        ("country", 49),
        ("app_version", 7.4),
        ("schema_version", "1"),
        ("schema_version", 1.0),
        ("schema_version", True),
    ],
)
def test_field_of_the_wrong_json_type_is_wrong_type(name: str, value: Any) -> None:
    assert reasons_of(line(**{name: value})) == [f"wrong_type:{name}"]


@pytest.mark.parametrize("name", ["event_id", "content_id", "affiliate_id", "user_id"])
@pytest.mark.parametrize(
    "value", ["", "x" * 129, "é" * 65, "😀" * 33], ids=["empty", "129 chars", "130 bytes", "132 bytes"]
)
def test_required_string_outside_1_to_128_utf8_bytes_is_bad_length(name: str, value: str) -> None:
    assert reasons_of(line(**{name: value})) == [f"bad_length:{name}"]


def test_required_string_of_128_utf8_bytes_is_valid() -> None:
    assert reasons_of(line(event_id="x" * 128, user_id="é" * 64, content_id="😀" * 32)) == []


def test_an_unpaired_surrogate_escape_counts_one_byte() -> None:
    assert reasons_of(line(user_id="\ud800" * 128)) == []
    assert reasons_of(line(user_id="\ud800" * 129)) == ["bad_length:user_id"]


@pytest.mark.parametrize("value", ["share", "Impression", "", "play-start"])
def test_event_type_outside_the_set_is_unknown(value: str) -> None:
    assert reasons_of(line(event_type=value)) == ["unknown_event_type"]


@pytest.mark.parametrize("value", ["roku", "", "smart tv", "webos"])
def test_platform_outside_the_set_is_unknown(value: str) -> None:
    assert reasons_of(line(platform=value)) == ["unknown_platform"]


@pytest.mark.parametrize("value", ["Web", "WEB", "iOS", "Android", "Tv"])
def test_platform_is_case_insensitive_and_stored_lower_case(value: str) -> None:
    result, _ = classify(line(platform=value), NOW)
    assert result is not None and result["platform"] == value.lower()


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-01 10:00:00Z",
        "2026-11-01T10:00:00",
        "2026-11-01t10:00:00z",
        "2026-11-01T10:00:00+0200",
        "2026-11-01T10:00:00.Z",
        "2026-11-01T10:00:00.1234567891Z",
        "2026-02-30T10:00:00Z",
        "2026-11-01T24:00:00Z",
        "2026-11-01T10:00:60Z",
        "2026-11-01T10:00:00+24:00",
        "2026/11/01 10:00:00",
        "1793527200000",
        "yesterday",
        "",
        " 2026-11-01T10:00:00Z",
    ],
)
def test_unparseable_event_time_string_is_bad_event_time(value: str) -> None:
    assert reasons_of(line(event_time=value)) == ["bad_event_time"]


def test_epoch_millis_outside_the_datetime_range_is_bad_event_time() -> None:
    assert reasons_of(line(event_time=10**20)) == ["bad_event_time"]


@pytest.mark.parametrize(
    ("value", "moment"),
    [
        ("2026-11-01T10:00:00Z", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("2026-11-01T12:00:00+02:00", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("2026-11-01T04:30:00-05:30", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("2026-11-01T00:30:00-09:30", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("2026-11-01T10:00:00.5Z", datetime(2026, 11, 1, 10, 0, 0, 500_000, tzinfo=UTC)),
        ("2026-11-01T10:00:00.12Z", datetime(2026, 11, 1, 10, 0, 0, 120_000, tzinfo=UTC)),
        ("2026-11-01T10:00:00.123Z", datetime(2026, 11, 1, 10, 0, 0, 123_000, tzinfo=UTC)),
        ("2026-11-01T10:00:00.1234Z", datetime(2026, 11, 1, 10, 0, 0, 123_400, tzinfo=UTC)),
        ("2026-11-01T10:00:00.12345Z", datetime(2026, 11, 1, 10, 0, 0, 123_450, tzinfo=UTC)),
        ("2026-11-01T10:00:00.123456Z", datetime(2026, 11, 1, 10, 0, 0, 123_456, tzinfo=UTC)),
        ("2026-11-01T10:00:00.1234567Z", datetime(2026, 11, 1, 10, 0, 0, 123_456, tzinfo=UTC)),
        ("2026-11-01T10:00:00.12345678Z", datetime(2026, 11, 1, 10, 0, 0, 123_456, tzinfo=UTC)),
        ("2026-11-01T10:00:00.999999999Z", datetime(2026, 11, 1, 10, 0, 0, 999_999, tzinfo=UTC)),
        ("2026-11-01T12:00:00.987654321+02:00", datetime(2026, 11, 1, 10, 0, 0, 987_654, tzinfo=UTC)),
        (1793527200000, datetime(2026, 11, 1, 10, tzinfo=UTC)),
        (1793527200123, datetime(2026, 11, 1, 10, 0, 0, 123_000, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_event_time_encodings_decode_to_utc(value: str | int, moment: datetime) -> None:
    result, reasons = classify(line(event_time=value), NOW)
    assert reasons == []
    assert result is not None
    assert result["event_time"] == moment
    assert result["event_time"].utcoffset() == timedelta(0)


def test_event_time_more_than_the_skew_ahead_is_in_the_future() -> None:
    limit = NOW + timedelta(hours=1)
    just_over = (limit + timedelta(milliseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    at_limit = limit.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert reasons_of(line(event_time=just_over)) == ["event_time_in_future"]
    assert reasons_of(line(event_time=at_limit)) == []


def test_future_skew_is_a_parameter() -> None:
    soon = (NOW + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _, reasons = classify(line(event_time=soon), NOW, max_future_skew=timedelta(minutes=5))
    assert reasons == ["event_time_in_future"]


@pytest.mark.parametrize("event_type", ["progress", "complete"])
@pytest.mark.parametrize("watch_ms", [..., None, -1, 1.5, 1000.0, "1000", True, 2**63], ids=repr)
def test_watch_ms_of_progress_and_complete_must_be_a_non_negative_int(event_type: str, watch_ms: Any) -> None:
    assert reasons_of(line(event_type=event_type, watch_ms=watch_ms)) == ["bad_watch_ms"]


def test_watch_ms_of_zero_is_valid() -> None:
    assert reasons_of(line(watch_ms=0)) == []


@pytest.mark.parametrize("event_type", ["impression", "click", "play_start"])
@pytest.mark.parametrize("watch_ms", [..., None, -5, "n/a", 2.5, 300], ids=repr)
def test_watch_ms_is_ignored_for_other_event_types(event_type: str, watch_ms: Any) -> None:
    result, reasons = classify(line(event_type=event_type, watch_ms=watch_ms), NOW)
    assert reasons == []
    assert result is not None and result["watch_ms"] is None


def test_optional_fields_may_be_null_and_schema_version_defaults_to_1() -> None:
    result, _ = classify(line(session_id=None, placement=None, schema_version=None), NOW)
    assert result is not None
    assert (result["session_id"], result["placement"], result["schema_version"]) == (None, None, 1)


def test_schema_version_is_kept() -> None:
    result, _ = classify(line(schema_version=2), NOW)
    assert result is not None and result["schema_version"] == 2


def test_every_applicable_reason_is_returned_sorted() -> None:
    raw = line(event_id=..., content_id=7, user_id="", platform="roku", event_time="soon", watch_ms=-3,
               country=1)
    assert reasons_of(raw) == [
        "bad_event_time",
        "bad_length:user_id",
        "bad_watch_ms",
        "missing_field:event_id",
        "unknown_platform",
        "wrong_type:content_id",
        "wrong_type:country",
    ]


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        classify(line(), datetime(2026, 11, 24))


@pytest.mark.parametrize(
    ("moment", "start"),
    [
        (datetime(2026, 11, 1, 10, 4, 59, 999_999, tzinfo=UTC), datetime(2026, 11, 1, 10, 0, tzinfo=UTC)),
        (datetime(2026, 11, 1, 10, 5, tzinfo=UTC), datetime(2026, 11, 1, 10, 5, tzinfo=UTC)),
        (datetime(2026, 11, 1, 10, 5, 0, 1, tzinfo=UTC), datetime(2026, 11, 1, 10, 5, tzinfo=UTC)),
        (datetime(2026, 11, 1, 0, 0, tzinfo=UTC), datetime(2026, 11, 1, 0, 0, tzinfo=UTC)),
        (datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC), datetime(2026, 10, 31, 23, 55, tzinfo=UTC)),
    ],
)
def test_window_start_is_epoch_aligned(moment: datetime, start: datetime) -> None:
    assert window_start(moment, timedelta(minutes=5)) == start


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def test_read_records_skips_blank_lines_and_reads_gzip(tmp_path: Path) -> None:
    plain = write(tmp_path / "a.json", "\nfirst\n\n   \nsecond\r\nthird\rfourth\n\n")
    packed = write(tmp_path / "b.json.gz", "fifth\n\t\nsixth")
    records = read_records([plain, packed])
    assert [raw for _, raw in records] == ["first", "second", "third", "fourth", "fifth", "sixth"]
    assert [source for source, _ in records] == [str(plain)] * 4 + [str(packed)] * 2


def test_expected_dedups_first_arrival_wins(tmp_path: Path) -> None:
    lines = [
        line(event_id="e-1", content_id="vid-00001"),
        line(event_id="e-1", content_id="vid-00002"),
        line(event_id="e-1", content_id="vid-00001"),
    ]
    first = write(tmp_path / "1.json", lines[0] + "\n")
    later = write(tmp_path / "2.json", "\n".join(lines[1:]) + "\n")
    result = expected([first, later], NOW)
    assert (result.records, result.valid_unique, result.duplicates, result.quarantined) == (3, 1, 2, 0)
    assert [e["content_id"] for e in result.events] == ["vid-00001"]


def test_invalid_record_does_not_claim_its_event_id(tmp_path: Path) -> None:
    path = write(
        tmp_path / "1.json",
        "\n".join([line(event_id="e-1", watch_ms=-1), line(event_id="e-1"), line(event_id="e-1")]),
    )
    result = expected([path], NOW)
    assert (result.records, result.quarantined, result.valid_unique, result.duplicates) == (3, 1, 1, 1)
    assert result.reasons == {"bad_watch_ms": 1}


def test_expected_aggregates_per_window_content_affiliate_placement_platform(tmp_path: Path) -> None:
    def at(minute: int, second: int = 0) -> str:
        return f"2026-11-01T10:{minute:02d}:{second:02d}Z"

    lines = [
        line(event_id="1", event_type="impression", event_time=at(0), user_id="a", watch_ms=...),
        line(event_id="2", event_type="impression", event_time=at(1), user_id="b", watch_ms=...),
        line(event_id="3", event_type="click", event_time=at(1, 5), user_id="b", watch_ms=...),
        line(event_id="4", event_type="play_start", event_time=at(1, 7), user_id="b", watch_ms=0),
        line(event_id="5", event_type="progress", event_time=at(1, 27), user_id="b", watch_ms=20_000),
        line(event_id="6", event_type="complete", event_time=at(4, 59), user_id="b", watch_ms=5_000),
        line(event_id="6", event_type="complete", event_time=at(4, 59), user_id="b", watch_ms=5_000),
        # next window (05:00 belongs to it), same content: platform case differs only in spelling
        line(event_id="7", event_type="progress", event_time=at(5), platform="WEB", user_id="a", watch_ms=7),
        # same window, another platform and a placement
        line(
            event_id="8", event_type="impression", event_time=at(2), platform="tv", user_id="c",
            placement="home_hero",
        ),
        # an empty placement is no placement
        line(event_id="10", event_type="impression", event_time=at(3), user_id="a", placement=""),
        # invalid: does not count
        line(event_id="9", event_type="impression", event_time=at(2), platform="roku", user_id="d"),
    ]
    path = write(tmp_path / "events.json", "\n".join(lines) + "\n\n")
    result = expected([path], NOW)

    w0, w5 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC), datetime(2026, 11, 1, 10, 5, tzinfo=UTC)
    zero = {"impressions": 0, "clicks": 0, "play_starts": 0, "completions": 0, "watch_time_ms": 0}
    assert result.aggregates == {
        (w0, "vid-00001", "aff-001", "(none)", "web"): {
            "impressions": 3, "clicks": 1, "play_starts": 1, "completions": 1, "watch_time_ms": 25_000,
            "unique_viewers": 2,
        },
        (w5, "vid-00001", "aff-001", "(none)", "web"): {**zero, "watch_time_ms": 7, "unique_viewers": 1},
        (w0, "vid-00001", "aff-001", "home_hero", "tv"): {**zero, "impressions": 1, "unique_viewers": 1},
    }
    assert (result.records, result.valid_unique, result.duplicates, result.quarantined) == (11, 9, 1, 1)


def test_expected_window_length_is_a_parameter(tmp_path: Path) -> None:
    path = write(
        tmp_path / "events.json",
        "\n".join(
            line(event_id=str(i), event_time=f"2026-11-01T10:0{i}:00Z", watch_ms=1) for i in range(4)
        ),
    )
    result = expected([path], NOW, window=timedelta(minutes=2))
    assert sorted((key[0].minute, row["watch_time_ms"]) for key, row in result.aggregates.items()) == [
        (0, 2),
        (2, 2),
    ]
