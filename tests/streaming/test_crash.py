"""kill -9 of the running app at several points, then a clean run: warehouse and lake equal the truth.

The lake is read with DuckDB, a reader that knows nothing of Spark's metadata or staging folders.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from streaming.run import run_pipeline
from tests import oracle
from tests.pipeline import make_scenario, pipeline_config, warehouse_rows
from tests.streaming.test_cli import config_args

METRICS = ("impressions", "clicks", "play_starts", "completions", "watch_time_ms")


def _started(checkpoints: Path, query: str, batch: int) -> bool:
    """The query has planned ``batch`` and not yet committed it: it is writing its sinks."""
    return (checkpoints / query / "offsets" / str(batch)).exists() and not (
        checkpoints / query / "commits" / str(batch)
    ).exists()


def run_and_kill(root: Path, when: str, query: str, batch: int, timeout_s: float = 240) -> None:
    """Start `mediapulse run`, SIGKILL it as soon as ``query`` is inside ``batch`` (or at the deadline)."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streaming.cli", "run", *config_args(root),
         "--set", "source.max_files_per_trigger=1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and proc.poll() is None:
            if _started(root / "checkpoints", query, batch):
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the app exited before the kill point ({when})"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def lake_counts(lake: Path) -> tuple[int, int, int]:
    """Rows and distinct ids in the event log, rows in the quarantine: the partition layout glob."""
    batches = "checkpoint_id=*/batch_id=*/*.parquet"
    with duckdb.connect() as conn:
        rows, ids = conn.execute(
            f"SELECT count(*), count(DISTINCT event_id) FROM read_parquet("
            f"'{lake}/events/event_date=*/event_hour=*/{batches}', hive_partitioning = true)"
        ).fetchone()
        (quarantined,) = conn.execute(
            f"SELECT count(*) FROM read_parquet('{lake}/quarantine/ingest_date=*/{batches}', "
            "hive_partitioning = true)"
        ).fetchone()
    return rows, ids, quarantined


def all_parquet_rows(lake: Path, table: str) -> int:
    with duckdb.connect() as conn:
        return conn.execute(f"SELECT count(*) FROM read_parquet('{lake}/{table}/**/*.parquet')").fetchone()[0]


def test_kill_9_at_three_points_then_a_clean_run_is_exactly_once(spark, tmp_path):
    scenario = make_scenario(tmp_path, events=3000, files=6, contents=80, users=400, seed=17)
    scenario.release()
    run_and_kill(tmp_path, "inside an ingest batch", "ingest", 1)
    run_and_kill(tmp_path, "inside an event-log batch", "events", 1)
    run_and_kill(tmp_path, "inside an engagement batch", "engagement", 2)

    cfg = pipeline_config(tmp_path, "source.max_files_per_trigger=1")
    run_pipeline(spark, cfg, available_now=True)

    truth = oracle.expected(scenario.incoming_files(), scenario.now)
    actual = warehouse_rows(cfg)
    assert {k: {m: v[m] for m in METRICS} for k, v in actual.items()} == {
        k: {m: v[m] for m in METRICS} for k, v in truth.aggregates.items()
    }
    lake = tmp_path / "lake"
    assert lake_counts(lake) == (truth.valid_unique, truth.valid_unique, truth.quarantined)
    # After a clean batch no staging leftovers remain: even a plain recursive glob is exact.
    assert all_parquet_rows(lake, "events") == truth.valid_unique
    assert all_parquet_rows(lake, "quarantine") == truth.quarantined
    path = cfg.warehouse.url.removeprefix("duckdb:///")
    with duckdb.connect(path, read_only=True) as conn:
        ledger = conn.execute(f"SELECT query_name, batch_id FROM {cfg.warehouse.ledger_table}").fetchall()
    assert len(ledger) == len(set(ledger))
