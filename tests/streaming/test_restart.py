"""A failed query is restarted from its checkpoint, within a budget; the totals stay exact."""

from __future__ import annotations

import itertools
import logging
import re

import pytest

from sinks.warehouse import open_warehouse
from streaming.run import PipelineError, run_pipeline
from tests.pipeline import assert_run_matches_truth, make_scenario, pipeline_config


def failing_once(cfg, failing_call: int):
    """A warehouse opener whose ``failing_call``-th call fails (call 1 is the check at start; then the
    engagement and viewers queries' loads, whichever comes first)."""
    calls = itertools.count(1)

    def opener():
        if next(calls) == failing_call:
            raise RuntimeError("injected sink failure")
        return open_warehouse(cfg.warehouse)

    return opener


def test_a_sink_failure_restarts_the_query_and_the_run_finishes_with_exact_totals(spark, tmp_path, caplog):
    scenario = make_scenario(tmp_path, events=1500, files=3, contents=40, users=200, seed=23)
    scenario.release()
    cfg = pipeline_config(tmp_path, "source.max_files_per_trigger=1", "run.restart_backoff=100 ms")
    with caplog.at_level(logging.WARNING, logger="streaming.run"):
        run_pipeline(spark, cfg, available_now=True, warehouse=failing_once(cfg, 2))
    restarted = r"query (engagement|viewers) failed: .*injected sink failure; restarting it"
    assert re.search(restarted, caplog.text)
    assert_run_matches_truth(spark, scenario, cfg)


def test_a_failure_past_the_restart_budget_ends_the_run_naming_the_setting(spark, tmp_path):
    scenario = make_scenario(tmp_path, events=300, files=1, contents=10, users=30, seed=24)
    scenario.release()
    cfg = pipeline_config(tmp_path, "run.max_restarts_per_hour=0")
    refusal = r"query (engagement|viewers) failed: .*injected.*run\.max_restarts_per_hour is 0"
    with pytest.raises(PipelineError, match=refusal):
        run_pipeline(spark, cfg, available_now=True, warehouse=failing_once(cfg, 2))
    assert not spark.streams.active
