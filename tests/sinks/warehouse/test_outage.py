"""A warehouse outage pauses the stream instead of ending it (issue 10, item 1).

The whole pipeline runs against a private PostgreSQL server of its own; in the middle of the run the
server is stopped from inside a batch's load transaction (rows staged, not yet merged) and started again
60 s later. The load retries meanwhile, one warning per attempt; the engagement query waits in that batch;
the run then goes on, and the warehouse equals the oracle with every batch in the ledger once. An outage
longer than ``warehouse.max_outage`` ends the load with an error that says so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from sinks.warehouse.base import StagedBatch, WarehouseError
from sinks.warehouse.postgres import PostgresSettings, PostgresWarehouse
from sinks.warehouse.protocol import RetryPolicy
from streaming.run import run_pipeline
from tests import oracle
from tests.pipeline import make_scenario, pipeline_config
from tests.sinks.warehouse import pgserver
from tests.sinks.warehouse.conftest import METRICS, TEST_PASSWORD, postgres_metrics
from tests.sinks.warehouse.data import make_rows, write_local_batch
from tests.sinks.warehouse.pgserver import DATABASE, TEST_ROLE, PgServer, free_port

log = logging.getLogger(__name__)

OUTAGE_S = 60.0
SCHEMA = "mp"


@pytest.fixture
def own_postgres() -> Iterator[PgServer]:
    """A server for this test alone: stopping it leaves the suite's shared server untouched."""
    if not pgserver.available():
        pytest.skip(f"PostgreSQL binaries not found in {pgserver.PG_BIN} (set MEDIAPULSE_PG_BIN)")
    with pgserver.private_postgres(TEST_PASSWORD) as server:
        yield server


@dataclass
class Outage:
    """Stops ``server`` inside the first non-empty load after :meth:`arm`, starts it ``seconds`` later."""

    server: PgServer
    seconds: float
    armed: threading.Event = field(default_factory=threading.Event)
    batch_id: int | None = None
    stopped_at: float = 0.0
    restarted_at: float = 0.0
    queries: list[Any] = field(default_factory=list)
    engagement_batch_at_restart: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _restart: threading.Timer | None = None

    def arm(self) -> None:
        self.armed.set()

    def begin_once(self, batch: StagedBatch) -> None:
        with self._lock:
            if not self.armed.is_set() or self.batch_id is not None or batch.rows == 0:
                return
            self.batch_id = batch.batch_id
        self.server.stop()
        self.stopped_at = time.monotonic()
        self._restart = threading.Timer(self.seconds, self._end)
        self._restart.start()

    def _end(self) -> None:
        [engagement] = [q for q in self.queries if q.name == "engagement"]
        progress = engagement.lastProgress
        self.engagement_batch_at_restart = progress["batchId"] if progress else None
        self.server.start()
        self.restarted_at = time.monotonic()

    def finish(self) -> None:
        """Whatever happened in the test, the server runs again before the fixture removes it."""
        if self._restart is not None:
            self._restart.join(timeout=OUTAGE_S + 30)


def test_a_60_s_outage_mid_run_pauses_the_stream_and_loses_nothing(
    spark: Any,
    tmp_path: Any,
    own_postgres: PgServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("MEDIAPULSE_WAREHOUSE_PASSWORD", TEST_PASSWORD)
    scenario = make_scenario(tmp_path, events=900, files=6, contents=40, users=200, seed=23)
    url = f"{own_postgres.url(SCHEMA)}&retry_base_ms=250&retry_max_ms=2000"
    cfg = pipeline_config(
        tmp_path, f"warehouse.url={url}", "warehouse.max_outage=5 min", "source.max_files_per_trigger=2"
    )
    outage = Outage(own_postgres, OUTAGE_S)

    def open_warehouse() -> PostgresWarehouse:
        wh = PostgresWarehouse.from_config(cfg.warehouse)
        stage = wh._stage

        def stage_then_outage(cur: Any, batch: StagedBatch, prepared: Any, *table: str) -> None:
            stage(cur, batch, prepared, *table)
            outage.begin_once(batch)  # inside the transaction: rows staged, nothing merged yet

        wh._stage = stage_then_outage  # type: ignore[method-assign]
        return wh

    stop = threading.Event()

    def drive(queries: list[Any]) -> None:
        outage.queries = queries
        for phase in range(3):
            scenario.release(2)
            if phase == 1:
                outage.arm()  # phase 1 loads meet the outage: batches before it, and after it
            for query in queries:
                query.processAllAvailable()
        stop.set()

    try:
        with caplog.at_level(logging.WARNING, logger="sinks.warehouse.protocol"):
            run_pipeline(spark, cfg, stop=stop, on_started=drive, warehouse=open_warehouse)
    finally:
        outage.finish()

    # The outage happened, inside a batch, and lasted the full 60 s.
    assert outage.batch_id is not None and outage.restarted_at > 0
    survived = outage.restarted_at - outage.stopped_at
    assert survived >= OUTAGE_S
    # The stream waited in that batch: the engagement query had not finished it when the server came back.
    assert outage.engagement_batch_at_restart is None or outage.engagement_batch_at_restart < outage.batch_id
    # One warning per failed attempt, each naming the batch and the time left.
    attempts = [
        r.getMessage()
        for r in caplog.records
        if f"batch {outage.batch_id}:" in r.getMessage() and "left of warehouse.max_outage" in r.getMessage()
    ]
    assert len(attempts) >= OUTAGE_S / 2.0  # waits are capped at retry_max_ms = 2 s
    assert "min" in attempts[0] and "left of warehouse.max_outage" in attempts[-1]

    # Totals exact, nothing lost.
    truth = oracle.expected(scenario.incoming_files(), scenario.now)
    expected = {k: {m: v[m] for m in METRICS} for k, v in truth.aggregates.items()}
    actual = postgres_metrics(own_postgres, SCHEMA)
    lost = len(set(expected) - set(actual))
    assert lost == 0
    assert actual == expected
    # Every engagement batch with rows is in the ledger exactly once, before and after the outage (a
    # batch without rows, which only moves the watermark, is not loaded).
    with own_postgres.admin() as conn:
        ledger = conn.execute(
            f"SELECT query_name, batch_id, count(*) FROM {SCHEMA}.mediapulse_batches"
            " GROUP BY query_name, batch_id ORDER BY query_name, batch_id"
        ).fetchall()
    engagement = [batch for name, batch, _ in ledger if name.startswith("engagement")]
    assert all(count == 1 for _, _, count in ledger)
    assert engagement == sorted(set(engagement))
    assert 0 < outage.batch_id < engagement[-1] and outage.batch_id in engagement
    log.info(
        "outage survived: %.1f s inside engagement batch %d; %d retry attempts logged; %d window rows, "
        "%d lost; ledger: %d batches with rows up to batch %d, each once",
        survived,
        outage.batch_id,
        len(attempts),
        len(actual),
        lost,
        len(engagement),
        engagement[-1],
    )


def test_an_outage_longer_than_max_outage_ends_the_load_with_a_clear_error(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listens on the port: every attempt is refused until the budget is spent."""
    settings = PostgresSettings(
        "127.0.0.1",
        free_port(),
        DATABASE,
        TEST_ROLE,
        retry=RetryPolicy(base_delay=0.1, max_delay=0.4, max_outage=timedelta(seconds=2)),
    )
    batch = write_local_batch(tmp_path, "engagement", 4, [make_rows(4)])
    started = time.monotonic()

    with (
        caplog.at_level(logging.WARNING, logger="sinks.warehouse.protocol"),
        pytest.raises(WarehouseError) as failure,
    ):
        PostgresWarehouse(settings, password=TEST_PASSWORD).load_batch(batch)

    elapsed = time.monotonic() - started
    message = str(failure.value)
    assert message.startswith("load of engagement batch 4: gave up after")
    assert "warehouse.max_outage is 2.0 s" in message and "Connection refused" in message
    assert 1.0 < elapsed < 3.0
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) >= 4
    assert all("load of engagement batch 4: cannot connect" in line for line in lines)
    assert all(" s left of warehouse.max_outage" in line for line in lines)
    left = [float(line.rsplit(", ", 1)[1].split(" s left")[0]) for line in lines]
    assert left == sorted(left, reverse=True)  # the time left counts down
