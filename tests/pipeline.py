"""Helpers for whole-pipeline tests: simulated input on disk, a config in tmp_path, warehouse readers, and
the comparison of a run's output with the independent oracle (tests/oracle.py)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from pyspark.sql import SparkSession

from devtools.simulate import SimulationSpec, simulate, write_dimension, write_files
from streaming.config import AppConfig, load_config
from tests import oracle

METRICS = ("impressions", "clicks", "play_starts", "completions", "watch_time_ms")


@dataclass(frozen=True)
class Scenario:
    root: Path
    files: list[Path]  # in arrival order, under the staged folder until released
    staged: Path
    incoming: Path
    now: datetime

    def release(self, count: int | None = None) -> list[Path]:
        """Move the next ``count`` staged files (all by default) into the incoming folder, in order."""
        moved = []
        pending = [f for f in self.files if f.exists()]
        for file in pending[: len(pending) if count is None else count]:
            target = self.incoming / file.relative_to(self.staged)
            target.parent.mkdir(parents=True, exist_ok=True)
            stat = file.stat()
            shutil.move(file, target)
            os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            moved.append(target)
        return moved

    def incoming_files(self) -> list[Path]:
        return sorted(p for p in self.incoming.rglob("*") if p.is_file())


def make_scenario(root: Path, **spec_args) -> Scenario:
    now = datetime.now(UTC)
    spec = SimulationSpec(now=now, **spec_args)
    traffic = simulate(spec)
    staged = root / "staged"
    files = write_files(traffic, staged, spec)
    write_dimension(traffic, root / "dimensions" / "content.csv")
    incoming = root / "incoming"
    incoming.mkdir(parents=True)
    return Scenario(root, files, staged, incoming, now)


def pipeline_config(root: Path, *overrides: str) -> AppConfig:
    return load_config(
        overrides=[
            f"source.path={root / 'incoming'}",
            f"dimensions.content_path={root / 'dimensions' / 'content.csv'}",
            f"lake.path={root / 'lake'}",
            f"warehouse.url=duckdb:///{root / 'warehouse.duckdb'}",
            f"checkpoint.path={root / 'checkpoints'}",
            f"metrics.path={root / 'metrics.jsonl'}",
            "trigger.interval=1 s",
            "trigger.viewers_interval=1 s",  # not a minute: tests wait for every query to catch up
            *overrides,
        ],
        environ={},
    )


def warehouse_rows(cfg: AppConfig) -> dict[tuple, dict]:
    path = cfg.warehouse.url.removeprefix("duckdb:///")
    with duckdb.connect(path, read_only=True) as conn:
        cursor = conn.execute(f"SELECT * FROM {cfg.warehouse.table}")
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    keys = ("content_id", "affiliate_id", "placement", "platform")
    return {(r["window_start"].replace(tzinfo=UTC), *(r[k] for k in keys)): r for r in rows}


def warehouse_query(cfg: AppConfig, statement: str) -> list[dict]:
    """Rows of one statement over the pipeline's DuckDB warehouse, as dicts."""
    path = cfg.warehouse.url.removeprefix("duckdb:///")
    with duckdb.connect(path, read_only=True) as conn:
        cursor = conn.execute(statement)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def assert_matches_truth(actual: dict, truth: oracle.Expected) -> None:
    assert set(actual) == set(truth.aggregates), "window keys differ from the ground truth"
    for key, expected in truth.aggregates.items():
        row = actual[key]
        assert {m: row[m] for m in METRICS} == {m: expected[m] for m in METRICS}, key
        viewers = expected["unique_viewers"]
        assert abs(row["unique_viewers"] - viewers) <= max(1, 0.02 * viewers), key
        ctr = None if expected["impressions"] == 0 else expected["clicks"] / expected["impressions"]
        assert row["ctr"] == pytest.approx(ctr), key


def assert_run_matches_truth(spark: SparkSession, scenario: Scenario, cfg: AppConfig) -> None:
    """The warehouse holds the oracle's aggregates of the released files, and the lake's event log each
    unique valid event once."""
    truth = oracle.expected(scenario.incoming_files(), scenario.now)
    assert_matches_truth(warehouse_rows(cfg), truth)
    assert spark.read.parquet(f"{cfg.lake.path}/events").count() == truth.valid_unique
