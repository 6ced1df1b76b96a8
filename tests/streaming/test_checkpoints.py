"""The checkpoint folder's layout: marked when new, refused when an earlier layout is found."""

from __future__ import annotations

import pytest

from streaming.checkpoints import CheckpointLayoutError, ensure_layout
from streaming.run import run_pipeline
from tests.pipeline import make_scenario, pipeline_config


def test_a_new_checkpoint_folder_is_marked_with_this_layout(spark, tmp_path):
    ensure_layout(spark, str(tmp_path / "checkpoints"))
    assert (tmp_path / "checkpoints" / "LAYOUT").read_text() == "mediapulse-checkpoints 2\n"
    ensure_layout(spark, str(tmp_path / "checkpoints"))  # and accepted again


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
    (tmp_path / "checkpoints" / "LAYOUT").write_text("mediapulse-checkpoints 3\n")
    with pytest.raises(CheckpointLayoutError, match="another version"):
        ensure_layout(spark, str(tmp_path / "checkpoints"))
