"""The streaming pipeline end to end into the PostgreSQL backend (a real private server)."""

from __future__ import annotations

from datetime import UTC

from sinks.warehouse.base import COLUMN_NAMES
from streaming.run import run_pipeline
from tests import oracle
from tests.pipeline import make_scenario, pipeline_config
from tests.sinks.warehouse.conftest import TEST_PASSWORD

METRICS = ("impressions", "clicks", "play_starts", "completions", "watch_time_ms")


def test_pipeline_lands_exact_totals_in_postgres_and_replays_nothing(
    spark, tmp_path, postgres_server, schema, monkeypatch
):
    monkeypatch.setenv("MEDIAPULSE_WAREHOUSE_PASSWORD", TEST_PASSWORD)
    scenario = make_scenario(tmp_path, events=1500, files=4, contents=50, users=300, seed=8)
    scenario.release()
    cfg = pipeline_config(
        tmp_path, f"warehouse.url={postgres_server.url(schema)}", "source.max_files_per_trigger=2"
    )
    run_pipeline(spark, cfg, available_now=True)
    run_pipeline(spark, cfg, available_now=True)  # nothing new: no change

    with postgres_server.admin() as conn:
        rows = conn.execute(f"SELECT {', '.join(COLUMN_NAMES)} FROM {schema}.content_engagement").fetchall()
        ledger = conn.execute(f"SELECT query_name, batch_id FROM {schema}.mediapulse_batches").fetchall()
    actual = {}
    for row in rows:
        r = dict(zip(COLUMN_NAMES, row, strict=True))
        start = r["window_start"]
        start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
        actual[(start, r["content_id"], r["affiliate_id"], r["platform"])] = {m: r[m] for m in METRICS}
    truth = oracle.expected(scenario.incoming_files(), scenario.now)
    assert actual == {k: {m: v[m] for m in METRICS} for k, v in truth.aggregates.items()}
    assert len(ledger) == len(set(ledger)) >= 2
