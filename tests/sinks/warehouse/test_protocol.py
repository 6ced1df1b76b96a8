"""The load protocol, on both paths: psycopg → PostgreSQL, and redshift_connector → proxy → PostgreSQL
(with the COPY step replaced by a loader that streams the manifest's files)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sinks.warehouse.analytics import Slice
from sinks.warehouse.base import COLUMN_NAMES, StagedBatch, WarehouseError
from sinks.warehouse.protocol import RetryPolicy, SqlWarehouse
from streaming.config import WarehouseConfig
from tests.sinks.warehouse.conftest import PgServer, read_ledger, read_target, wait_for_lock_waiter
from tests.sinks.warehouse.data import (
    Row,
    apply_batches,
    as_tuples,
    make_rows,
    write_local_batch,
    write_s3_batch,
)


@dataclass
class Backend:
    name: str
    make: Callable[..., SqlWarehouse]
    stage: Callable[[str, int, list[list[Row]]], StagedBatch]
    drop_connection: Callable[[Any], None]
    serialization_error: Callable[[], Exception]
    server: PgServer
    schema: str

    def target(self) -> list[tuple[Any, ...]]:
        return read_target(self.server, self.schema)

    def ledger(self) -> list[tuple[Any, ...]]:
        return read_ledger(self.server, self.schema)


@pytest.fixture(params=["postgres", "redshift"])
def backend(
    request: pytest.FixtureRequest, postgres_server: PgServer, schema: str, tmp_path: Path
) -> Backend:
    if request.param == "postgres":
        import psycopg

        make = request.getfixturevalue("make_postgres")
        make().init()

        def stage(query: str, batch_id: int, parts: list[list[Row]]) -> StagedBatch:
            return write_local_batch(tmp_path, query, batch_id, parts)

        def drop(cur: Any) -> None:
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
            with postgres_server.admin() as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

        def serialization_error() -> Exception:
            return psycopg.errors.SerializationFailure("could not serialize access (injected)")

        return Backend("postgres", make, stage, drop, serialization_error, postgres_server, schema)

    import redshift_connector

    make = request.getfixturevalue("make_redshift")
    s3 = request.getfixturevalue("s3_client")
    bucket = request.getfixturevalue("bucket")
    proxy = request.getfixturevalue("pg_proxy")

    def stage_s3(query: str, batch_id: int, parts: list[list[Row]]) -> StagedBatch:
        return write_s3_batch(s3, bucket, "staging", query, batch_id, parts)

    def drop_all(cur: Any) -> None:
        assert proxy.drop_connections() >= 1

    def redshift_1023() -> Exception:
        return redshift_connector.ProgrammingError(
            {
                "S": "ERROR",
                "C": "XX000",
                "M": "1023",
                "D": "Serializable isolation violation on table - 100167, transactions forming the cycle",
            }
        )

    return Backend("redshift", make, stage_s3, drop_all, redshift_1023, postgres_server, schema)


def after_staging(monkeypatch: pytest.MonkeyPatch, wh: SqlWarehouse, action: Callable[[Any], None]) -> None:
    """Run ``action(cursor)`` right after the staging table is filled, inside the load's transaction."""
    original = wh._stage

    def staged(cur: Any, batch: StagedBatch, prepared: Any) -> None:
        original(cur, batch, prepared)
        action(cur)

    monkeypatch.setattr(wh, "_stage", staged)


def test_replayed_batch_changes_nothing(backend: Backend) -> None:
    rows = make_rows(1)
    batch = backend.stage("engagement", 1, [rows[:7], rows[7:]])
    wh = backend.make()

    assert wh.load_batch(batch) is True
    after_first = backend.target()
    assert wh.load_batch(batch) is False

    assert backend.target() == after_first == as_tuples(apply_batches([rows]))
    assert backend.ledger() == [("engagement", 1, len(rows))]
    assert wh.committed("engagement") == [1]


def test_later_batch_replaces_matched_rows_and_adds_new_ones(backend: Backend) -> None:
    first = make_rows(1, contents=("c1", "c2"))
    second = make_rows(2, contents=("c2", "c3"), seed=5)  # c2 rows are updated, c3 rows are new
    wh = backend.make()

    wh.load_batch(backend.stage("engagement", 1, [first]))
    wh.load_batch(backend.stage("engagement", 2, [second]))

    assert backend.target() == as_tuples(apply_batches([first, second]))
    assert wh.committed("engagement") == [1, 2]


def test_duplicate_keys_in_one_batch_keep_the_newest_row(backend: Backend) -> None:
    rows = make_rows(3, contents=("c1",), affiliates=("a1",), windows=1, platforms=("web",))
    older = {**rows[0], "impressions": 1, "updated_at": rows[0]["updated_at"].replace(second=0)}
    newer = {**rows[0], "impressions": 999}
    batch = backend.stage("engagement", 3, [[older], [newer]])

    assert backend.make().load_batch(batch) is True

    assert backend.target() == as_tuples(apply_batches([[older, newer]]))
    assert backend.target()[0][COLUMN_NAMES.index("impressions")] == 999
    assert backend.ledger() == [("engagement", 3, 2)]


def test_empty_batch_is_recorded_and_changes_nothing(backend: Backend) -> None:
    wh = backend.make()
    empty = backend.stage("engagement", 4, [])

    assert wh.load_batch(empty) is True

    assert backend.target() == []
    assert backend.ledger() == [("engagement", 4, 0)]


def test_failure_after_staging_leaves_nothing_and_the_retry_lands_once(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = make_rows(1)
    batch = backend.stage("engagement", 1, [rows])
    wh = backend.make()

    def crash(cur: Any) -> None:
        raise RuntimeError("process died between staging and commit")

    after_staging(monkeypatch, wh, crash)
    with pytest.raises(WarehouseError, match="process died") as failure:
        wh.load_batch(batch)
    assert isinstance(failure.value.__cause__, RuntimeError)
    assert backend.target() == []
    assert backend.ledger() == []

    monkeypatch.undo()
    assert backend.make().load_batch(batch) is True
    assert backend.target() == as_tuples(apply_batches([rows]))
    assert backend.ledger() == [("engagement", 1, len(rows))]


def test_dropped_connection_after_staging_reconnects_and_lands_once(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rows = make_rows(1)
    batch = backend.stage("engagement", 1, [rows])
    wh = backend.make()
    drops = []

    def drop_once(cur: Any) -> None:
        if not drops:
            drops.append(1)
            backend.drop_connection(cur)

    after_staging(monkeypatch, wh, drop_once)
    with caplog.at_level(logging.WARNING):
        assert wh.load_batch(batch) is True

    assert drops == [1]
    assert any("disconnect" in r.getMessage() for r in caplog.records)
    assert backend.target() == as_tuples(apply_batches([rows]))
    assert backend.ledger() == [("engagement", 1, len(rows))]


def test_serialization_failures_are_retried_until_max_outage_then_fail_clearly(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rows = make_rows(1)
    batch = backend.stage("engagement", 1, [rows])
    budget = timedelta(seconds=1.5)  # room for several attempts on a loaded machine
    wh = backend.make(retry=RetryPolicy(base_delay=0.05, max_delay=0.1, max_outage=budget))
    injected = backend.serialization_error()
    attempts = []

    def conflict(cur: Any) -> None:
        attempts.append(time.monotonic())
        raise injected

    after_staging(monkeypatch, wh, conflict)
    with caplog.at_level(logging.WARNING), pytest.raises(WarehouseError, match="gave up after") as failure:
        wh.load_batch(batch)

    assert len(attempts) >= 3
    assert attempts[-1] - attempts[0] < budget.total_seconds()  # no attempt starts past the budget
    assert "warehouse.max_outage is 1.5 s" in str(failure.value)
    assert failure.value.__cause__ is injected
    retries = [r.getMessage() for r in caplog.records if "left of warehouse.max_outage" in r.getMessage()]
    assert len(retries) == len(attempts) - 1  # one line per failed attempt that is tried again
    assert all("serialization" in line for line in retries)
    assert backend.target() == []
    assert backend.ledger() == []


def test_other_operations_give_up_after_max_attempts(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    wh = backend.make(retry=RetryPolicy(max_attempts=3, base_delay=0, max_delay=0))
    wh.committed("engagement")  # connected
    injected = backend.serialization_error()
    calls = []

    def conflict(cur: Any) -> list[int]:
        calls.append(1)
        raise injected

    with pytest.raises(WarehouseError, match="failed after 3 attempts") as failure:
        wh._run("ledger read", conflict)
    assert len(calls) == 3
    assert failure.value.__cause__ is injected


def test_two_writers_of_the_same_batch_apply_it_once(backend: Backend) -> None:
    rows = make_rows(1, contents=("c1", "c2", "c3", "c4"), windows=3)
    batch = backend.stage("engagement", 1, [rows])
    writers = [backend.make(), backend.make()]
    start = threading.Barrier(len(writers), timeout=20)
    results: list[bool] = []
    errors: list[BaseException] = []

    def write(wh: SqlWarehouse) -> None:
        try:
            start.wait()
            results.append(wh.load_batch(batch))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write, args=(wh,)) for wh in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    assert sorted(results) == [False, True]
    assert backend.ledger() == [("engagement", 1, len(rows))]
    assert backend.target() == as_tuples(apply_batches([rows]))


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_concurrent_writers_retry_serialization_failures_and_totals_are_exact(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Both transactions stage, then both MERGE and write the ledger at once: one of them must fail to
    serialize, be retried, and land; the target ends as if they had run one after the other.

    PostgreSQL only: Redshift loads lock the ledger first, so they take turns instead (next test)."""
    batches = {
        1: make_rows(1, contents=("c1", "c2"), seed=1),
        2: make_rows(2, contents=("c3", "c4"), seed=2),
    }
    staged = {n: backend.stage("engagement", n, [rows]) for n, rows in batches.items()}
    meet = threading.Barrier(2, timeout=20)
    writers = {n: backend.make() for n in batches}
    for wh in writers.values():
        first_attempt = []

        def rendezvous(cur: Any, first_attempt: list[int] = first_attempt) -> None:
            if not first_attempt:
                first_attempt.append(1)
                meet.wait()

        after_staging(monkeypatch, wh, rendezvous)
    results: dict[int, bool] = {}
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            results[n] = writers[n].load_batch(staged[n])
        except BaseException as e:
            errors.append(e)

    with caplog.at_level(logging.WARNING):
        threads = [threading.Thread(target=write, args=(n,)) for n in batches]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)

    assert errors == []
    assert results == {1: True, 2: True}
    assert any("serialization" in r.getMessage() for r in caplog.records)
    expected = apply_batches(batches.values())
    assert backend.target() == as_tuples(expected)
    target_impressions = sum(row[COLUMN_NAMES.index("impressions")] for row in backend.target())
    assert target_impressions == sum(r["impressions"] for r in expected.values())
    assert [b for _, b, _ in backend.ledger()] == [1, 2]


@pytest.mark.parametrize("backend", ["redshift"], indirect=True)
def test_concurrent_redshift_loads_take_turns_on_the_ledger_lock(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first load holds the ledger lock (paused after staging); the second waits on LOCK, not on a
    serialization failure, and lands once the first commits."""
    batches = {
        1: make_rows(1, contents=("c1", "c2"), seed=1),
        2: make_rows(2, contents=("c2", "c3"), seed=2),  # c2 rows: batch 2 replaces batch 1's
    }
    staged = {n: backend.stage("engagement", n, [rows]) for n, rows in batches.items()}
    writers = {n: backend.make() for n in batches}
    holding, release = threading.Event(), threading.Event()

    def hold(cur: Any) -> None:
        holding.set()
        assert release.wait(30)

    after_staging(monkeypatch, writers[1], hold)
    results: dict[int, bool] = {}
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            results[n] = writers[n].load_batch(staged[n])
        except BaseException as e:
            errors.append(e)

    first = threading.Thread(target=write, args=(1,))
    first.start()
    assert holding.wait(30)
    second = threading.Thread(target=write, args=(2,))
    second.start()
    assert wait_for_lock_waiter(backend.server), "the second load should wait on the ledger lock"
    release.set()
    for t in (first, second):
        t.join(timeout=60)

    assert errors == []
    assert results == {1: True, 2: True}
    assert backend.target() == as_tuples(apply_batches([batches[1], batches[2]]))
    assert [b for _, b, _ in backend.ledger()] == [1, 2]


def test_a_query_name_is_a_bound_value_not_an_identifier(backend: Backend) -> None:
    """Backfill names its ledger rows ``backfill-<from>-<to>-<started>``: hyphens are fine in a value."""
    name = "backfill-20261102T120000-20261102T121000-20261129T101500123456"
    rows = make_rows(1)
    wh = backend.make()

    assert wh.load_batch(backend.stage(name, 0, [rows])) is True
    assert wh.load_batch(backend.stage(name, 0, [rows])) is False

    assert backend.ledger() == [(name, 0, len(rows))]
    assert wh.committed(name) == [0]
    assert backend.target() == as_tuples(apply_batches([rows]))


def test_top_orders_content_by_each_metric(backend: Backend) -> None:
    rows = make_rows(1, contents=("c1", "c2", "c3", "c4", "c5"), seed=9)
    wh = backend.make()
    wh.load_batch(backend.stage("engagement", 1, [rows]))
    per_content: dict[str, dict[str, int]] = {}
    for r in rows:
        sums = per_content.setdefault(r["content_id"], {"impressions": 0, "clicks": 0, "plays": 0})
        sums["impressions"] += r["impressions"]
        sums["clicks"] += r["clicks"]
        sums["plays"] += r["play_starts"]

    by_impressions = sorted(per_content, key=lambda c: (-per_content[c]["impressions"], c))[:3]
    by_ctr = sorted(per_content, key=lambda c: (-per_content[c]["clicks"] / per_content[c]["impressions"], c))

    top = wh.top(Slice(), "impressions", limit=3).records()
    assert [t["content_id"] for t in top] == by_impressions
    assert [t["impressions"] for t in top] == [per_content[c]["impressions"] for c in by_impressions]
    assert [t["content_id"] for t in wh.top(Slice(), "ctr", limit=5).records()] == by_ctr
    plays = wh.top(Slice(), "plays", limit=1).records()[0]["play_starts"]
    assert plays == max(s["plays"] for s in per_content.values())
    with pytest.raises(WarehouseError, match="cannot order by"):
        wh.top(Slice(), "popularity")


def test_bad_identifier_in_config_is_a_clear_error(backend: Backend) -> None:
    from sinks.warehouse import open_warehouse

    url = "postgresql://u@127.0.0.1:5432/db" if backend.name == "postgres" else "redshift://h:5439/db"
    with pytest.raises(WarehouseError, match=r"invalid schema 'analytics;drop'"):
        open_warehouse(WarehouseConfig(url=f"{url}?schema=analytics;drop"))
    with pytest.raises(WarehouseError, match=r"invalid warehouse.table 'engagement-v2'"):
        backend.make(table="engagement-v2")
    for name in ("", "engagement\x00", "q" * 257, "é" * 129):
        with pytest.raises(WarehouseError, match="invalid query name"):
            backend.make().load_batch(StagedBatch(name, 1, "/tmp/x"))
