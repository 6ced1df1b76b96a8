"""A load the warehouse refuses for a data reason is not retried: the error names the batch and the rows,
and the app stops instead of replaying the batch forever (a real private PostgreSQL)."""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from sinks.warehouse import analytics, open_warehouse
from sinks.warehouse.base import RejectedRowsError
from streaming.run import PipelineError, run_pipeline
from tests.pipeline import make_scenario, pipeline_config
from tests.sinks.warehouse.conftest import TEST_PASSWORD, PgServer, read_ledger, read_target
from tests.sinks.warehouse.data import make_rows, write_local_batch


def narrow_title(server: PgServer, schema: str, width: int) -> None:
    """The title column as a narrow VARCHAR, as Redshift's byte widths would refuse a long title (the views
    over it go first; ``init`` creates them again)."""
    with server.admin() as conn:
        for view in analytics.VIEW_NAMES:
            conn.execute(f"DROP VIEW IF EXISTS {schema}.{view} CASCADE")
        conn.execute(f"ALTER TABLE {schema}.content_engagement ALTER COLUMN title TYPE varchar({width})")


def test_a_value_too_long_for_its_column_fails_at_once_naming_the_batch_and_the_row(
    make_postgres: Any, postgres_server: PgServer, schema: str, tmp_path: Path, caplog: Any
) -> None:
    rows = make_rows(3, contents=("c1",), affiliates=("a1",), windows=1, platforms=("web", "ios"))
    rows[1]["title"] = "a title longer than eight characters"
    batch = write_local_batch(tmp_path, "engagement", 3, [rows])
    wh = make_postgres()
    wh.init()
    narrow_title(postgres_server, schema, 8)

    with caplog.at_level(logging.INFO), pytest.raises(RejectedRowsError) as failure:
        wh.load_batch(batch)

    message = str(failure.value)
    assert "load of engagement batch 3 failed: value too long for type character varying(8)" in message
    assert "every replay would fail the same way" in message
    key = rows[1]
    named = (
        f"row 2 of the staged files: window_start={key['window_start']}, content_id=c1, affiliate_id=a1, "
        f"placement={key['placement']}, platform=ios"
    )
    assert named in message
    assert "column title" in message
    assert "attempt" not in caplog.text  # not retried
    assert read_ledger(postgres_server, schema) == []
    assert read_target(postgres_server, schema) == []


def test_a_violated_constraint_in_the_merge_names_the_failing_row(
    make_postgres: Any, postgres_server: PgServer, schema: str, tmp_path: Path
) -> None:
    rows = make_rows(4, contents=("c1",), affiliates=("a1",), windows=1, platforms=("web",))
    batch = write_local_batch(tmp_path, "engagement", 4, [rows])
    wh = make_postgres()
    wh.init()
    with postgres_server.admin() as conn:  # the staging table (LIKE) does not copy the check
        conn.execute(f"ALTER TABLE {schema}.content_engagement ADD CHECK (impressions < 0)")

    with pytest.raises(RejectedRowsError, match=r"engagement batch 4[^\n]*check constraint") as failure:
        wh.load_batch(batch)

    assert re.search(r"Failing row contains \(.*c1, a1, [^,]+, web", str(failure.value))
    assert wh.committed("engagement") == []


def test_the_app_stops_without_a_restart_when_the_warehouse_rejects_a_batch(
    spark: Any, tmp_path: Path, postgres_server: PgServer, caplog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("MEDIAPULSE_WAREHOUSE_PASSWORD", TEST_PASSWORD)
    scenario = make_scenario(tmp_path, events=300, files=1, contents=10, users=30, seed=31)
    scenario.release()
    cfg = pipeline_config(tmp_path, f"warehouse.url={postgres_server.url(schema)}")
    assert cfg.run.max_restarts_per_hour > 0
    try:
        with open_warehouse(cfg.warehouse) as warehouse:
            warehouse.init()
        narrow_title(postgres_server, schema, 2)

        with caplog.at_level(logging.WARNING, logger="streaming.run"):
            with pytest.raises(PipelineError) as stopped:
                run_pipeline(spark, cfg, available_now=True)

        message = str(stopped.value)
        stopped_at = r"query engagement stopped, not restarted: .*load of engagement_\w+ batch 0 failed"
        assert re.search(stopped_at, message)
        assert re.search(r"rejected rows:\n  row \d+ of the staged files: window_start=", message)
        assert "restarting" not in caplog.text
        assert not spark.streams.active
        # no engagement batch committed (the viewers query's rollups do not carry the title)
        assert [row for row in read_ledger(postgres_server, schema) if row[0].startswith("engagement_")] == []
    finally:
        with postgres_server.admin() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
