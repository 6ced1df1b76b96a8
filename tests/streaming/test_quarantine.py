"""``mediapulse quarantine stats|show`` over a quarantine the lake sink wrote; expected from the oracle."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from sinks.lake import LakeSink
from streaming.cli import main
from streaming.parse import parse_events
from streaming.quarantine import QuarantineError, ReasonCount, reason_counts, sample_records
from streaming.schema import RAW_SCHEMA
from streaming.transforms import quarantine_rows
from tests.oracle import classify
from tests.streaming.test_parse import line

DAY_1 = datetime(2026, 11, 2, 9, 30)
DAY_2 = datetime(2026, 11, 3, 18, 0)
ARRIVALS = {
    DAY_1: [line(platform="roku"), line(platform="Fridge"), line(event_id="e2", platform="roku"), "{oops"],
    DAY_2: [line(platform="roku", user_id=None), line(event_id="e3", user_id=7), line(event_id="e4")],
}


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory) -> Path:
    """Each day's records parsed and written by the lake's quarantine sink, one batch a day."""
    root = tmp_path_factory.mktemp("lake")
    sink = LakeSink("quarantine", str(root / "quarantine"), ("ingest_date",), quarantine_rows, "c0ffee")
    for batch_id, (ingested, records) in enumerate(ARRIVALS.items()):
        rows = [(r, f"file:///in/{batch_id}.json", ingested) for r in records]
        raw = spark.createDataFrame(rows, RAW_SCHEMA)
        sink.write(parse_events(raw, timedelta(hours=1)), batch_id)
    (root / "quarantine" / "_temporary" / "0").mkdir(parents=True)  # an interrupted write's leftovers
    return root


def expected_counts() -> list[ReasonCount]:
    now = datetime.now(UTC)
    counts: Counter[tuple[date, str]] = Counter()
    for ingested, records in ARRIVALS.items():
        for record in records:
            counts.update((ingested.date(), reason) for reason in classify(record, now)[1])
    return [ReasonCount(day, reason, n) for (day, reason), n in counts.items()]


def test_stats_counts_records_by_ingestion_day_and_reason(lake):
    counts = reason_counts(str(lake))
    assert sorted(counts, key=str) == sorted(expected_counts(), key=str)
    assert [c.day for c in counts] == sorted(c.day for c in counts)  # oldest day first


def test_stats_keeps_to_the_days_asked_for(lake):
    counts = reason_counts(str(lake), start=date(2026, 11, 3))
    assert {c.day for c in counts} == {date(2026, 11, 3)}


def test_show_finds_records_by_reason_code_or_kind_newest_first(lake):
    by_code = sample_records(str(lake), "unknown_platform")
    assert [r.ingest_time.date() for r in by_code] == [date(2026, 11, 3)] + [date(2026, 11, 2)] * 3
    assert sorted(by_code[0].reasons) == ["missing_field:user_id", "unknown_platform"]
    assert by_code[0].raw == ARRIVALS[DAY_2][0] and by_code[0].source == "file:///in/1.json"

    by_kind = sample_records(str(lake), "missing_field")
    assert [r.raw for r in by_kind] == [ARRIVALS[DAY_2][0]]
    assert len(sample_records(str(lake), "unknown_platform", limit=2)) == 2
    assert sample_records(str(lake), "unknown") == []  # a kind is the part before ':', not any prefix


def test_the_cli_prints_the_counts_and_the_samples(lake, capsys):
    assert main(["quarantine", "stats", "--set", f"lake.path={lake}"]) == 0
    out = capsys.readouterr().out
    assert "2026-11-02  unknown_platform" in out and "2026-11-03  wrong_type:user_id" in out

    assert main(["quarantine", "show", "--reason", "malformed_json", "--set", f"lake.path={lake}"]) == 0
    assert "  {oops\n" in capsys.readouterr().out


def test_a_lake_without_quarantine_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(QuarantineError, match="no quarantine at"):
        reason_counts(str(tmp_path))
    assert main(["quarantine", "stats", "--set", f"lake.path={tmp_path}"]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reason", "no_such_reason"], "unknown reason 'no_such_reason'"),
        (["--reason", "unknown"], "unknown reason 'unknown'"),  # a kind is the part before ':'
        (
            ["--reason", "unknown_platform", "--from", "2026-11-03", "--to", "2026-11-03"],
            "--to 2026-11-03 must be after --from 2026-11-03",
        ),
        (["--reason", "unknown_platform"], "no quarantine at"),
        (
            ["--reason", "unknown_platform", "--set", "source.kind=kinesis", "--set", "source.stream_name=s"],
            "source.kind is kinesis",
        ),
    ],
)
def test_replay_refuses_bad_input_in_one_line_before_spark_starts(tmp_path, capsys, args, message):
    assert main(["quarantine", "replay", "--set", f"lake.path={tmp_path}", *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
