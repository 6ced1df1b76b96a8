"""``mediapulse quarantine replay`` on the real pipeline (Spark, DuckDB warehouse), against the oracle.

Records with a then-unknown platform (``roku``) are quarantined; the platform is added to
``validation.platforms``; a replay sends the quarantined records the corrected contract accepts through
the pipeline once. Expected values come from :mod:`tests.oracle` on the original input under the
corrected contract, with the replayed records arriving in a second run (so the ones whose window closed
meanwhile are late).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streaming.config import AppConfig
from streaming.quarantine import reason_counts
from streaming.replay import ReplayResult, Selection, ledger_root, replay_quarantined, replay_root
from streaming.run import run_pipeline
from tests import oracle
from tests.pipeline import assert_matches_truth, make_scenario, pipeline_config, warehouse_rows

ROKU = "roku"
CORRECTED = (*sorted(oracle.PLATFORMS), ROKU)
SELECTION = Selection("unknown_platform")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def roku_lines(events: list[dict], newest: datetime) -> list[str]:
    """Hand-made roku records: on time (their window still open after the first run), late (their window
    long closed), one re-sent, and two that stay invalid (no user) once roku is accepted."""

    def record(n: int, moment: datetime, **changes) -> str:
        base = events[n % len(events)]
        body = {
            "event_id": f"roku-{n}",
            "event_type": ("impression", "click", "play_start")[n % 3],
            "event_time": _iso(moment),
            "content_id": base["content_id"],
            "affiliate_id": base["affiliate_id"],
            "platform": "Roku" if n % 4 == 0 else ROKU,
            "user_id": f"roku-user-{n % 5}",
            "placement": "home_hero",
        }
        body.update(changes)
        return json.dumps({k: v for k, v in body.items() if v is not None})

    on_time = [record(n, newest - timedelta(minutes=1)) for n in range(8)]
    late = [record(n, newest - timedelta(hours=1)) for n in range(8, 12)]
    invalid = [record(n, newest - timedelta(minutes=1), user_id=None) for n in range(12, 14)]
    return [*on_time, on_time[1], *late, *invalid]


@dataclass(frozen=True)
class Replayed:
    cfg: AppConfig
    truth: oracle.Expected  # corrected contract, replayed records in a second run
    before: int  # quarantined records before the replay (original contract)
    replayable: int  # of those, records the corrected contract accepts
    replayable_ids: set[str]  # their event ids
    stays: int  # the others of the selection
    still_invalid: Counter[str]  # their reasons under the corrected contract
    dry: ReplayResult
    result: ReplayResult
    quarantine_rows: int
    events_rows: int
    warehouse: dict


def quarantine_count(spark, cfg: AppConfig) -> int:
    return spark.read.parquet(f"{cfg.lake.path}/quarantine").count()


def events_count(spark, cfg: AppConfig) -> int:
    return spark.read.parquet(f"{cfg.lake.path}/events").count()


@pytest.fixture(scope="module")
def replayed(spark, tmp_path_factory) -> Replayed:
    root = tmp_path_factory.mktemp("replay")
    scenario = make_scenario(root, events=2500, files=4, contents=60, users=300, seed=23, malformed=0.05)
    scenario.release()
    simulated = oracle.expected(scenario.incoming_files(), scenario.now)
    newest = max(e["event_time"] for e in simulated.events)
    partner = scenario.incoming / "partner" / "roku.json"
    partner.parent.mkdir()
    partner.write_text("\n".join(roku_lines(simulated.events, newest)) + "\n")
    files = scenario.incoming_files()

    # First run, original contract: every roku record is quarantined.
    run_pipeline(spark, pipeline_config(root), available_now=True)
    before = quarantine_count(spark, pipeline_config(root))

    # The fix is a config change; the quarantined records of the reason are replayed.
    cfg = pipeline_config(root, f"validation.platforms=[{', '.join(CORRECTED)}]")
    records = oracle.read_records(files)
    refused = [r for r in records if "unknown_platform" in oracle.classify(r[1], scenario.now)[1]]
    rest = [r for r in records if r not in refused]
    truth = oracle.expected_runs([rest, refused], scenario.now, platforms=CORRECTED)
    now_classified = [oracle.classify(r[1], scenario.now, platforms=CORRECTED) for r in refused]
    accepted = [event for event, _ in now_classified if event is not None]
    still_invalid = Counter(reason for _, reasons in now_classified for reason in reasons)

    dry = replay_quarantined(spark, cfg, SELECTION, dry_run=True)
    dry_wrote = Path(replay_root(cfg.source)).exists() or Path(ledger_root(cfg.lake.path)).exists()
    assert not dry_wrote, "a dry run wrote something"
    result = replay_quarantined(spark, cfg, SELECTION)
    run_pipeline(spark, cfg, available_now=True)
    return Replayed(
        cfg,
        truth,
        before,
        len(accepted),
        {event["event_id"] for event in accepted},
        len(refused) - len(accepted),
        still_invalid,
        dry,
        result,
        quarantine_count(spark, cfg),
        events_count(spark, cfg),
        warehouse_rows(cfg),
    )


def test_the_first_run_quarantined_the_unknown_platform(replayed):
    assert replayed.replayable > 10  # the hand-made roku records and the simulated ones
    assert replayed.before == replayed.truth.quarantined + replayed.replayable


def test_a_dry_run_counts_what_the_corrected_contract_accepts_and_writes_nothing(replayed):
    dry = replayed.dry
    assert (dry.selected, dry.already_replayed) == (replayed.replayable + replayed.stays, 0)
    assert dry.replayed == replayed.replayable
    assert dry.still_invalid == dict(replayed.still_invalid)
    assert dry.replay_id == replayed.result.replay_id  # the same selection of the same records


def test_the_windows_equal_the_oracle_on_the_corrected_contract(replayed):
    assert_matches_truth(replayed.warehouse, replayed.truth)
    assert any(key[4] == ROKU for key in replayed.warehouse)


def test_every_replayed_event_is_in_the_event_log_late_ones_too(spark, replayed):
    assert replayed.truth.late > 0
    assert replayed.events_rows == replayed.truth.valid_unique
    lines = [json.loads(line) for line in Path(replayed.cfg.metrics.path).read_text().splitlines()]
    late = sum(line["late_events"] for line in lines if line["query"] == "engagement")
    assert late == replayed.truth.late


def test_replayed_events_keep_their_original_source_and_ingest_time(spark, replayed):
    lake = replayed.cfg.lake.path
    origins: dict[str, set] = {}
    for r in spark.read.parquet(f"{lake}/quarantine").collect():
        event, _ = oracle.classify(r.raw, datetime.now(UTC), platforms=CORRECTED)
        if event is not None:
            origins.setdefault(event["event_id"], set()).add((r.source, r.ingest_time))
    events = spark.read.parquet(f"{lake}/events").filter(f"platform = '{ROKU}'").collect()
    assert {e.event_id for e in events} == replayed.replayable_ids
    assert len(events) == len(replayed.replayable_ids)
    for event in events:
        assert (event.source, event.ingest_time) in origins[event.event_id]
        assert "mediapulse-replay" not in event.source


def test_the_quarantine_keeps_every_record_and_stats_tell_replayed_from_open(replayed):
    assert replayed.quarantine_rows == replayed.before
    counts = [c for c in reason_counts(replayed.cfg.lake.path) if c.reason == "unknown_platform"]
    assert sum(c.replayed for c in counts) == replayed.replayable
    assert sum(c.records - c.replayed for c in counts) == sum(replayed.still_invalid.values())


def test_a_second_replay_changes_nothing(spark, replayed):
    cfg = replayed.cfg
    folders = sorted(Path(replay_root(cfg.source)).iterdir())
    again = replay_quarantined(spark, cfg, SELECTION)
    assert (again.replayed, again.already_replayed, again.replay_id) == (0, replayed.replayable, None)
    assert sorted(Path(replay_root(cfg.source)).iterdir()) == folders
    run_pipeline(spark, cfg, available_now=True)
    assert warehouse_rows(cfg) == replayed.warehouse
    assert events_count(spark, cfg) == replayed.events_rows
    assert quarantine_count(spark, cfg) == replayed.quarantine_rows


def test_a_replay_cut_short_after_its_ledger_is_finished_by_the_next_one(spark, replayed, tmp_path):
    """The replay's files are written from its ledger alone, to the same names."""
    import shutil

    from streaming.replay import finish_pending

    cfg = replayed.cfg
    folder = Path(replay_root(cfg.source)) / replayed.result.replay_id
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    root = tmp_path / "replay-root"
    assert finish_pending(spark, ledger_root(cfg.lake.path), str(root)) == [replayed.result.replay_id]
    rewritten = root / replayed.result.replay_id
    assert sorted(p.read_text() for p in rewritten.glob("part-*.json")) == sorted(
        p.read_text() for p in copy.glob("part-*.json")
    )
    assert finish_pending(spark, ledger_root(cfg.lake.path), str(root)) == []
