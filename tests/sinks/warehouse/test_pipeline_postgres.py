"""The streaming pipeline end to end into the PostgreSQL backend (a real private server), and a backfill
from its lake into PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from sinks.warehouse import open_warehouse
from streaming.config import load_config
from streaming.run import run_pipeline
from tests import oracle
from tests.pipeline import make_scenario, pipeline_config
from tests.sinks.warehouse.conftest import METRICS, TEST_PASSWORD, PgServer, postgres_metrics


@pytest.fixture(scope="module")
def postgres_run(spark: Any, tmp_path_factory: Any, postgres_server: PgServer) -> Iterator[tuple[Any, ...]]:
    """Two available-now runs (the second finds nothing new) into a schema of their own."""
    root = tmp_path_factory.mktemp("postgres-pipeline")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MEDIAPULSE_WAREHOUSE_PASSWORD", TEST_PASSWORD)
        scenario = make_scenario(root, events=1500, files=4, contents=50, users=300, seed=8)
        scenario.release()
        cfg = pipeline_config(
            root, f"warehouse.url={postgres_server.url(schema)}", "source.max_files_per_trigger=2"
        )
        run_pipeline(spark, cfg, available_now=True)
        run_pipeline(spark, cfg, available_now=True)  # nothing new: no change
        truth = oracle.expected(scenario.incoming_files(), scenario.now)
        yield cfg, truth, schema
    with postgres_server.admin() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def expected_metrics(truth: oracle.Expected) -> dict[tuple[Any, ...], dict[str, int]]:
    return {k: {m: v[m] for m in METRICS} for k, v in truth.aggregates.items()}


def test_pipeline_lands_exact_totals_in_postgres_and_replays_nothing(
    postgres_run: tuple[Any, ...], postgres_server: PgServer
) -> None:
    _, truth, schema = postgres_run

    assert postgres_metrics(postgres_server, schema) == expected_metrics(truth)
    with postgres_server.admin() as conn:
        ledger = conn.execute(f"SELECT query_name, batch_id FROM {schema}.mediapulse_batches").fetchall()
    assert len(ledger) == len(set(ledger)) >= 2


def test_backfill_recomputes_windows_into_postgres(
    spark: Any, postgres_run: tuple[Any, ...], postgres_server: PgServer, schema: str
) -> None:
    """Its ledger rows are named ``backfill-<from>-<to>-<started>``: a bound value with hyphens."""
    from streaming.backfill import run_backfill

    cfg, truth, _ = postgres_run
    fresh = load_config(
        overrides=[
            f"lake.path={cfg.lake.path}",
            f"dimensions.content_path={cfg.dimensions.content_path}",
            f"warehouse.url={postgres_server.url(schema)}",
        ],
        environ={},
    )
    with open_warehouse(fresh.warehouse) as warehouse:
        warehouse.init()
    start = min(k[0] for k in truth.aggregates)
    end = max(k[0] for k in truth.aggregates) + timedelta(minutes=5)

    rows = run_backfill(spark, fresh, start, end)

    assert rows == len(truth.aggregates)
    assert postgres_metrics(postgres_server, schema) == expected_metrics(truth)
    with postgres_server.admin() as conn:
        [(name, batch_id)] = conn.execute(
            f"SELECT query_name, batch_id FROM {schema}.mediapulse_batches"
        ).fetchall()
    assert name.startswith("backfill-") and batch_id == 0
