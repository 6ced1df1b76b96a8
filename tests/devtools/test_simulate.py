from __future__ import annotations

import argparse
import csv
import gzip
import json
import re
import sys
import types
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from devtools.simulate import (
    MALFORMED_KINDS,
    SimulationSpec,
    Traffic,
    add_arguments,
    run,
    simulate,
    write_dimension,
    write_files,
)
from tests.oracle import classify, expected, read_records

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SMALL = SimulationSpec(events=2_000, now=NOW, files=6)
LARGE = SimulationSpec(events=20_000, now=NOW)

# The reasons the oracle must give for each kind of malformed record the simulator writes.
EXPECTED_REASONS = {
    "broken_json": lambda r: r == ["malformed_json"],
    "not_an_object": lambda r: r == ["not_an_object"],
    "missing_field": lambda r: len(r) == 1 and r[0].startswith("missing_field:"),
    "wrong_type": lambda r: len(r) == 1 and r[0].startswith("wrong_type:"),
    "unknown_event_type": lambda r: r == ["unknown_event_type"],
    "unknown_platform": lambda r: r == ["unknown_platform"],
    "bad_event_time": lambda r: r == ["bad_event_time"],
    "future_event_time": lambda r: r == ["event_time_in_future"],
    "negative_watch_ms": lambda r: r == ["bad_watch_ms"],
    "missing_watch_ms": lambda r: r == ["bad_watch_ms"],
}


@pytest.fixture(scope="module")
def large() -> Traffic:
    return simulate(LARGE)


@pytest.fixture(scope="module")
def large_files(large: Traffic, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_files(large, tmp_path_factory.mktemp("incoming"), LARGE)


def valid_events(traffic: Traffic) -> list[dict[str, Any]]:
    events = []
    for raw in traffic.lines:
        event, _ = classify(raw, traffic.now)
        if event is not None:
            events.append(event)
    return events


def test_same_spec_gives_identical_lines() -> None:
    first, second = simulate(SMALL).lines, simulate(SMALL).lines
    assert first
    assert first == second


def test_same_spec_gives_identical_files(tmp_path: Path) -> None:
    traffic = simulate(SMALL)
    first = write_files(traffic, tmp_path / "a", SMALL)
    second = write_files(traffic, tmp_path / "b", SMALL)
    assert [p.relative_to(tmp_path / "a") for p in first] == [p.relative_to(tmp_path / "b") for p in second]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_different_seeds_give_different_lines() -> None:
    assert simulate(SMALL).lines != simulate(replace(SMALL, seed=8)).lines


def test_event_count_is_exact_and_retries_come_on_top(large: Traffic) -> None:
    assert len(large.lines) == LARGE.events + round(LARGE.duplicates * LARGE.events)
    assert large.duplicates == round(LARGE.duplicates * LARGE.events)
    assert sum(large.malformed.values()) == round(LARGE.malformed * LARGE.events)


def test_oracle_counts_honour_default_rates(large: Traffic, large_files: list[Path]) -> None:
    result = expected(large_files, large.now)
    assert result.records == len(large.lines)
    assert result.duplicates / LARGE.events == pytest.approx(LARGE.duplicates, rel=0.1)
    assert result.quarantined / LARGE.events == pytest.approx(LARGE.malformed, rel=0.1)
    assert result.valid_unique + result.duplicates + result.quarantined == result.records


@pytest.mark.parametrize(("duplicates", "malformed"), [(0.0, 0.0), (0.1, 0.05), (0.3, 0.2)])
def test_oracle_counts_honour_requested_rates(duplicates: float, malformed: float, tmp_path: Path) -> None:
    spec = SimulationSpec(events=5_000, duplicates=duplicates, malformed=malformed, now=NOW, files=4)
    result = expected(write_files(simulate(spec), tmp_path, spec), NOW)
    # A retry of a malformed record is quarantined again rather than counted as a duplicate.
    assert result.duplicates == pytest.approx(duplicates * (1 - malformed) * spec.events, rel=0.1, abs=5)
    assert result.quarantined == pytest.approx(malformed * (1 + duplicates) * spec.events, rel=0.1, abs=5)


def test_a_line_is_invalid_exactly_when_it_is_malformed(large: Traffic) -> None:
    for raw, kind in zip(large.lines, large.kinds, strict=True):
        _, reasons = classify(raw, large.now)
        if kind is None:
            assert reasons == [], raw
        else:
            assert EXPECTED_REASONS[kind](reasons), (kind, reasons, raw)


def test_every_malformed_kind_appears(large: Traffic) -> None:
    assert set(large.malformed) == set(MALFORMED_KINDS)
    watch_problems = Counter()
    for raw, kind in zip(large.lines, large.kinds, strict=True):
        if kind in {"negative_watch_ms", "missing_watch_ms"}:
            watch_ms = json.loads(raw).get("watch_ms")
            watch_problems["missing" if watch_ms is None else "negative"] += 1
    assert watch_problems["missing"] > 0 and watch_problems["negative"] > 0


def test_future_dated_records_are_a_day_ahead_of_the_wall_clock_by_default() -> None:
    before = datetime.now(UTC)
    traffic = simulate(SimulationSpec(events=2_000))
    kinds = zip(traffic.lines, traffic.kinds, strict=True)
    futures = [raw for raw, kind in kinds if kind == "future_event_time"]
    assert futures
    for raw in futures:
        event, _ = classify(raw, traffic.now, max_future_skew=timedelta(days=3))
        assert event is not None
        assert event["event_time"] >= before + timedelta(days=1) - timedelta(milliseconds=1)


def test_retries_repeat_a_line_later_within_a_minute(large: Traffic) -> None:
    first_seen: dict[str, datetime] = {}
    retries = 0
    for raw, arrival, resent in zip(large.lines, large.arrivals, large.resent, strict=True):
        if resent:
            retries += 1
            assert raw in first_seen
            assert timedelta(0) <= arrival - first_seen[raw] <= timedelta(seconds=60)
        else:
            first_seen.setdefault(raw, arrival)
    assert retries == large.duplicates


@pytest.mark.parametrize("bound", [timedelta(seconds=120), timedelta(seconds=20)])
def test_arrival_is_out_of_order_within_the_bound(bound: timedelta) -> None:
    spec = replace(LARGE, events=5_000, out_of_order=bound)
    traffic = simulate(spec)
    latest = datetime.min.replace(tzinfo=UTC)
    lateness = timedelta(0)
    for raw, arrival in zip(traffic.lines, traffic.arrivals, strict=True):
        event, _ = classify(raw, traffic.now)
        if event is None:
            continue
        assert timedelta(0) <= arrival - event["event_time"] <= bound
        latest = max(latest, event["event_time"])
        lateness = max(lateness, latest - event["event_time"])
    assert bound / 2 < lateness <= bound
    assert traffic.arrivals == sorted(traffic.arrivals)


def test_events_lie_within_the_span(large: Traffic) -> None:
    times = [e["event_time"] for e in valid_events(large)]
    assert LARGE.start <= min(times) < LARGE.start + timedelta(minutes=5)
    assert LARGE.start + LARGE.span - timedelta(minutes=5) < max(times) < LARGE.start + LARGE.span


def test_files_are_laid_out_in_hour_folders_and_sort_in_arrival_order(
    large: Traffic, large_files: list[Path]
) -> None:
    root = large_files[0].parents[4]
    assert len(large_files) == LARGE.files
    assert sorted(large_files) == large_files
    name = re.compile(r"mediapulse-(\d{4})-(\d{4})-(\d{2})-(\d{2})-(\d{2})-\d{2}-\d{2}\.json(\.gz)?")
    for n, path in enumerate(large_files, start=1):
        match = name.fullmatch(path.name)
        assert match is not None, path.name
        assert int(match.group(1)) == n
        folder = path.parent.relative_to(root).parts
        assert folder == (match.group(2), match.group(3), match.group(4), match.group(5))
    assert [raw for _, raw in read_records(large_files)] == large.lines


def test_file_folder_is_the_arrival_hour_of_its_first_line(large: Traffic, large_files: list[Path]) -> None:
    root = large_files[0].parents[4]
    position = 0
    for path in large_files:
        first = large.arrivals[position]
        assert path.parent.relative_to(root) == Path(f"{first:%Y/%m/%d/%H}")
        position += len(read_records([path]))
    assert {p.parent.name for p in large_files} >= {"00", "01"}


def test_about_half_the_files_are_gzipped_and_readable(large_files: list[Path]) -> None:
    packed = [p for p in large_files if p.suffix == ".gz"]
    assert len(packed) == len(large_files) // 2
    for path in packed:
        assert gzip.decompress(path.read_bytes()).decode("utf-8").strip()


def test_no_gzip_writes_plain_files(tmp_path: Path) -> None:
    spec = replace(SMALL, gzip=False)
    files = write_files(simulate(spec), tmp_path, spec)
    assert files
    assert all(p.suffix == ".json" for p in files)


def test_files_hold_a_few_blank_lines(large_files: list[Path]) -> None:
    blank = 0
    for path in large_files:
        data = path.read_bytes()
        text = (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8")
        blank += text.split("\n")[:-1].count("")
    assert 1 <= blank <= len(large_files)


def test_dimension_covers_all_but_the_missing_share_of_used_content(large: Traffic) -> None:
    used = {e["content_id"] for e in valid_events(large)}
    listed = {row["content_id"] for row in large.content_rows}
    assert len(used - listed) == round(LARGE.missing_content * len(used))
    assert len(listed) == LARGE.contents - len(used - listed)


def test_dimension_rows_are_well_formed(large: Traffic) -> None:
    for row in large.content_rows:
        assert list(row) == ["content_id", "title", "category", "content_type", "duration_s", "publisher",
                             "published_at"]
        assert row["content_type"] in {"video", "clip", "article"}
        assert (row["duration_s"] is None) == (row["content_type"] == "article")
        assert datetime.fromisoformat(row["published_at"]) < LARGE.start


def test_write_dimension_csv(large: Traffic, tmp_path: Path) -> None:
    path = tmp_path / "dimensions" / "content.csv"
    write_dimension(large, path)
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(large.content_rows)
    assert rows[0] == {k: "" if v is None else str(v) for k, v in large.content_rows[0].items()}


def test_write_dimension_parquet(large: Traffic, tmp_path: Path) -> None:
    path = tmp_path / "dimensions" / "content.parquet"
    write_dimension(large, path)
    table = pq.read_table(path)
    assert table.column_names == list(large.content_rows[0])
    assert table.column("content_id").to_pylist() == [r["content_id"] for r in large.content_rows]
    assert table.column("published_at").type.tz == "UTC"


def test_traffic_looks_like_real_clients(large: Traffic) -> None:
    events = valid_events(large)
    types_ = Counter(e["event_type"] for e in events)
    platforms = Counter(e["platform"] for e in events)
    assert types_["click"] / types_["impression"] == pytest.approx(0.08, abs=0.02)
    assert types_["play_start"] / types_["click"] == pytest.approx(0.70, abs=0.1)
    assert types_["complete"] / types_["play_start"] == pytest.approx(0.40, abs=0.1)
    assert platforms["web"] / len(events) == pytest.approx(0.5, abs=0.1)
    assert set(platforms) == {"web", "ios", "android", "tv"}
    impressions = Counter(e["content_id"] for e in events if e["event_type"] == "impression")
    top, *_ = impressions.most_common(1)
    assert top[1] > 20 * sorted(impressions.values())[len(impressions) // 2]  # Zipf head
    sessions = {e["session_id"]: e for e in events if e["session_id"]}
    assert all(
        (e["platform"], e["affiliate_id"], e["user_id"])
        == (sessions[e["session_id"]]["platform"], sessions[e["session_id"]]["affiliate_id"],
            sessions[e["session_id"]]["user_id"])
        for e in events if e["session_id"]
    )


def test_records_use_every_client_encoding(large: Traffic) -> None:
    bodies = [json.loads(raw) for raw, kind in zip(large.lines, large.kinds, strict=True) if kind is None]
    times = [b["event_time"] for b in bodies]
    millis = sum(isinstance(t, int) for t in times)
    assert millis / len(times) == pytest.approx(0.2, abs=0.03)
    strings = [t for t in times if isinstance(t, str)]
    assert any(t.endswith("Z") and "." not in t for t in strings)
    assert any(re.search(r"[+-]\d{2}:\d{2}$", t) for t in strings)
    fraction_digits = {len(m.group(1)) for t in strings if (m := re.search(r"\.(\d+)", t))}
    assert fraction_digits == set(range(1, 10))
    assert any(b["platform"] != b["platform"].lower() for b in bodies)
    assert any("schema_version" not in b for b in bodies)
    assert any("session_id" not in b or b["session_id"] is None for b in bodies)
    assert any(set(b) - {"event_id", "event_type", "event_time", "content_id", "affiliate_id", "platform",
                         "user_id", "session_id", "placement", "country", "app_version", "watch_ms",
                         "schema_version"} for b in bodies)


@pytest.mark.parametrize(
    "changes",
    [{"events": 0}, {"duplicates": 1.0}, {"malformed": -0.1}, {"missing_content": 1.5}, {"files": 0},
     {"start": datetime(2026, 11, 1)}],
)
def test_spec_rejects_bad_values(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimulationSpec(**changes)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mediapulse simulate")
    add_arguments(p)
    return p


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--duplicates", "1"], "must be a rate in [0, 1)"),
        (["--malformed", "-0.5"], "must be a rate in [0, 1)"),
        (["--malformed", "lots"], "not a number"),
        (["--events", "0"], "must be > 0"),
        (["--files", "x"], "not an integer"),
        (["--rate", "0"], "must be > 0"),
    ],
)
def test_command_line_rejects_bad_values(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["--out", "x", *argv])
    assert message in capsys.readouterr().err


def test_run_needs_out_for_files() -> None:
    with pytest.raises(argparse.ArgumentError, match="--out"):
        run(parser().parse_args([]))


def test_run_writes_files_and_dimension_beside_them(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "data" / "incoming"
    args = parser().parse_args(["--out", str(out), "--events", "500", "--files", "3", "--no-gzip"])
    with caplog.at_level("INFO", logger="devtools.simulate"):
        assert run(args) == 0
    assert len(sorted(out.rglob("*.json"))) == 3
    assert (tmp_path / "data" / "dimensions" / "content.csv").is_file()
    assert "510 lines (10 duplicates, 5 malformed)" in caplog.text


def test_run_sends_lines_to_kinesis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    producer = types.ModuleType("devtools.producer")
    producer.send_lines = lambda lines, **kwargs: calls.append({"lines": lines, **kwargs})  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "devtools.producer", producer)
    dimension = tmp_path / "content.parquet"
    args = parser().parse_args(
        ["--to", "kinesis", "--stream", "events", "--endpoint", "http://127.0.0.1:4567", "--rate", "500",
         "--events", "300", "--dimension", str(dimension)]
    )
    assert run(args) == 0
    assert len(calls) == 1
    call = calls[0]
    assert len(call.pop("lines")) == 306
    assert call == {
        "stream": "events", "endpoint_url": "http://127.0.0.1:4567", "rate": 500.0, "region": None,
    }
    assert dimension.is_file()
