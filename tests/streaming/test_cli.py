"""The `mediapulse` command as a user runs it: a real process, real signals."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time

from streaming.cli import main
from tests import oracle
from tests.pipeline import make_scenario, pipeline_config, warehouse_rows

METRICS = ("impressions", "clicks", "play_starts", "completions", "watch_time_ms")


def config_args(root) -> list[str]:
    return [
        "--set", f"source.path={root / 'incoming'}",
        "--set", f"dimensions.content_path={root / 'dimensions' / 'content.csv'}",
        "--set", f"lake.path={root / 'lake'}",
        "--set", f"warehouse.url=duckdb:///{root / 'warehouse.duckdb'}",
        "--set", f"checkpoint.path={root / 'checkpoints'}",
        "--set", "trigger.interval=1 s",
    ]  # fmt: skip


def test_sigterm_stops_after_the_current_batch_with_exact_totals(tmp_path):
    scenario = make_scenario(tmp_path, events=1200, files=3, contents=40, users=200, seed=21)
    scenario.release()
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streaming.cli", "run", *config_args(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    seen: list[str] = []
    try:
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not any("[engagement] batch" in line for line in seen):
            if selector.select(timeout=5):
                line = proc.stdout.readline()
                if not line:
                    break
                seen.append(line)
        assert any("[engagement] batch" in line for line in seen), "".join(seen[-20:])
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(seen) + rest
    assert proc.returncode == 0, output[-3000:]
    assert "stopping after the current micro-batch" in output
    assert "summary ingest" in output
    truth = oracle.expected(scenario.incoming_files(), scenario.now)
    actual = warehouse_rows(pipeline_config(tmp_path))
    assert {k: {m: v[m] for m in METRICS} for k, v in actual.items()} == {
        k: {m: v[m] for m in METRICS} for k, v in truth.aggregates.items()
    }


def test_bad_configuration_exits_2_naming_the_key(capsys, caplog):
    assert main(["run", "--set", "engagement.window=soon", "--set", "lake.colour=blue"]) == 2
    assert "engagement.window" in caplog.text
    assert "lake.colour" in caplog.text


def test_top_on_an_empty_warehouse_prints_an_empty_table(tmp_path, capsys):
    assert main(["top", "--set", f"warehouse.url=duckdb:///{tmp_path / 'w.duckdb'}"]) == 0
    assert "Top content by impressions" in capsys.readouterr().out
