"""The checkpoint folder's layout: marked when new, refused when an earlier layout is found."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import timedelta

import pytest

from devtools.simulate import DEFAULT_START
from streaming.checkpoints import CheckpointLayoutError, ensure_layout, purge_consumed_records
from streaming.query import start_ingest
from streaming.run import run_pipeline
from tests import oracle
from tests.pipeline import (
    assert_matches_truth,
    assert_run_matches_truth,
    make_scenario,
    pipeline_config,
    warehouse_rows,
)


def test_a_new_checkpoint_folder_is_marked_with_this_layout(spark, tmp_path):
    identity = ensure_layout(spark, str(tmp_path / "checkpoints"))
    assert (tmp_path / "checkpoints" / "LAYOUT").read_text() == f"mediapulse-checkpoints 3\nid {identity}\n"
    assert ensure_layout(spark, str(tmp_path / "checkpoints")) == identity  # accepted again, same identity


@pytest.mark.parametrize("query", ["ingest", "engagement"])
def test_checkpoints_of_the_two_reader_layout_are_refused_before_any_query_starts(spark, tmp_path, query):
    make_scenario(tmp_path, events=10, files=1, contents=5, users=5, seed=1).release()
    (tmp_path / "checkpoints" / query / "offsets").mkdir(parents=True)
    (tmp_path / "checkpoints" / query / "offsets" / "0").write_text("v1\n")
    cfg = pipeline_config(tmp_path)
    refusal = r"checkpoint\.path .*earlier mediapulse.*new checkpoint\.path"
    with pytest.raises(CheckpointLayoutError, match=refusal):
        run_pipeline(spark, cfg, available_now=True)
    assert not spark.streams.active
    assert not (tmp_path / "lake").exists(), "nothing was written"


def test_a_checkpoint_folder_of_another_layout_version_is_refused(spark, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "LAYOUT").write_text("mediapulse-checkpoints 2\nid 0123abcd\n")
    with pytest.raises(CheckpointLayoutError, match="another version"):
        ensure_layout(spark, str(tmp_path / "checkpoints"))


def test_record_files_both_readers_committed_are_purged_after_the_retention(spark, tmp_path):
    scenario = make_scenario(tmp_path, events=600, files=3, contents=20, users=50, seed=2)
    scenario.release(2)
    cfg = pipeline_config(tmp_path, "checkpoint.records_retention=1 ms", "source.max_files_per_trigger=1")
    run_pipeline(spark, cfg, available_now=True)  # purges what both readers committed at the end
    records = tmp_path / "checkpoints" / "records"
    assert not list(records.glob("*.parquet"))
    scenario.release()
    run_pipeline(spark, cfg, available_now=True)
    assert_run_matches_truth(spark, scenario, cfg)


def test_record_files_are_kept_while_a_reader_has_not_committed(spark, tmp_path):
    scenario = make_scenario(tmp_path, events=300, files=1, contents=10, users=30, seed=3)
    scenario.release()
    root = str(tmp_path / "checkpoints")
    cfg = pipeline_config(tmp_path)
    ensure_layout(spark, root)
    start_ingest(spark, cfg, available_now=True).awaitTermination()
    assert list((tmp_path / "checkpoints" / "records").glob("*.parquet"))
    assert purge_consumed_records(spark, root, timedelta(milliseconds=1)) == []


def test_a_reset_checkpoint_does_not_skip_the_batches_of_new_data(spark, tmp_path):
    """Delete the checkpoint, run again over new data: warehouse and lake get it, the old output stays."""
    first = make_scenario(tmp_path / "first", events=600, files=2, contents=20, users=60, seed=8)
    later = make_scenario(
        tmp_path / "later", events=600, files=2, contents=20, users=60, seed=9,
        start=DEFAULT_START + timedelta(hours=6),
    )  # fmt: skip
    shared = [f"warehouse.url=duckdb:///{tmp_path / 'w.duckdb'}", f"lake.path={tmp_path / 'lake'}"]
    for scenario in (first, later):
        scenario.release()
        cfg = pipeline_config(scenario.root, *shared, f"checkpoint.path={tmp_path / 'checkpoints'}")
        run_pipeline(spark, cfg, available_now=True)
        shutil.rmtree(tmp_path / "checkpoints")  # a reset: batch ids start again at 0

    truth_first = oracle.expected(first.incoming_files(), first.now)
    truth_later = oracle.expected(later.incoming_files(), later.now)
    assert not set(truth_first.aggregates) & set(truth_later.aggregates), "the two runs' windows are apart"
    assert_matches_truth(warehouse_rows(cfg), _union(truth_first, truth_later))
    events = spark.read.parquet(f"{tmp_path / 'lake'}/events")
    assert events.count() == truth_first.valid_unique + truth_later.valid_unique
    quarantine = spark.read.parquet(f"{tmp_path / 'lake'}/quarantine")
    assert quarantine.count() == truth_first.quarantined + truth_later.quarantined


def _union(a: oracle.Expected, b: oracle.Expected) -> oracle.Expected:
    return dataclasses.replace(a, aggregates={**a.aggregates, **b.aggregates})
