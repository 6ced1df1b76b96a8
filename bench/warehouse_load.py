"""Rows per second loaded into PostgreSQL: the bulk path against an ``executemany`` baseline, same rows.

    .venv/bin/python bench/warehouse_load.py [--rows 200000] [--batches 4] [--url postgresql://…]

Without ``--url`` a private PostgreSQL 15 server is started on loopback (durable settings: fsync on) and
removed afterwards. The rows are written as Parquet files (one per batch, as Spark stages them), then:

* bulk path: :meth:`PostgresWarehouse.load_batch` — read Parquet with pyarrow, ``COPY … FROM STDIN``
  into a temporary table, keep the newest row per key, MERGE, ledger row, one SERIALIZABLE transaction;
* baseline: read the same Parquet files into Python tuples and ``cursor.executemany`` an
  ``INSERT … ON CONFLICT (key) DO UPDATE`` (the same replace-by-key result, without the ledger), one
  transaction per batch.

``--batches`` batches of new keys are followed by one batch that rewrites the first batch's keys (the
MERGE's UPDATE path), then a replay of batch 1 (skipped by the ledger).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sinks.warehouse.base import COLUMN_NAMES, ENGAGEMENT_COLUMNS, KEY, StagedBatch
from sinks.warehouse.postgres import (
    PostgresWarehouse,
    iter_record_batches,
    parse_postgres_url,
    password_from_env,
)

REPO = Path(__file__).resolve().parents[1]
AFFILIATES = 4
PLATFORMS = ("web", "ios", "android", "tv")
WINDOWS_PER_BATCH = 5
T0_US = 1_793_620_800_000_000  # 2026-11-02 12:00 UTC in microseconds
WINDOW_US = 300_000_000


def engagement_batch(batch_id: int, rows: int, first_window: int, bump: int = 0) -> pa.Table:
    """``rows`` engagement rows over WINDOWS_PER_BATCH windows, unique per key, built column-wise."""
    per_window = rows // WINDOWS_PER_BATCH
    contents = max(1, per_window // (AFFILIATES * len(PLATFORMS)))
    n = WINDOWS_PER_BATCH * contents * AFFILIATES * len(PLATFORMS)
    i = pa.array(range(n), pa.int64())
    platform_i = pc.bit_wise_and(i, 3)
    affiliate_i = pc.bit_wise_and(pc.shift_right(i, 2), 3)
    content_i = pc.divide(pc.shift_right(i, 4), WINDOWS_PER_BATCH)
    window_i = pc.add(pc.remainder(pc.shift_right(i, 4), WINDOWS_PER_BATCH), first_window)
    start = pc.add(pc.multiply(window_i, WINDOW_US), T0_US).cast(pa.timestamp("us", tz="UTC"))
    end = pc.add(pc.multiply(pc.add(window_i, 1), WINDOW_US), T0_US).cast(pa.timestamp("us", tz="UTC"))
    impressions = pc.add(pc.remainder(pc.multiply(i, 7919 + bump), 997), 10)
    clicks = pc.remainder(pc.multiply(i, 31 + bump), impressions)
    plays = pc.remainder(pc.multiply(i, 17), pc.add(clicks, 1))
    completions = pc.remainder(pc.multiply(i, 13), pc.add(plays, 1))
    content_id = pc.binary_join_element_wise("c", content_i.cast(pa.string()), "")
    columns = {
        "window_start": start,
        "window_end": end,
        "content_id": content_id,
        "affiliate_id": pc.binary_join_element_wise("a", affiliate_i.cast(pa.string()), ""),
        "placement": pa.array(["home_hero"] * n),
        "platform": pc.take(pa.array(PLATFORMS), platform_i),
        "title": pc.binary_join_element_wise("Title of ", content_id, ""),
        "category": pc.binary_join_element_wise("cat-", pc.remainder(content_i, 8).cast(pa.string()), ""),
        "content_type": pc.take(pa.array(["video", "article", "podcast"]), pc.remainder(content_i, 3)),
        "duration_s": pa.array([600] * n, pa.int32()),
        "impressions": impressions,
        "clicks": clicks,
        "play_starts": plays,
        "completions": completions,
        "watch_time_ms": pc.multiply(plays, 45_000),
        "unique_viewers": pc.add(pc.remainder(i, impressions), 1),
        "last_event_time": start,
        "ctr": pc.divide(clicks.cast(pa.float64()), impressions.cast(pa.float64())),
        "play_rate": pc.divide(plays.cast(pa.float64()), impressions.cast(pa.float64())),
        "completion_rate": pc.divide(completions.cast(pa.float64()), pc.add(plays, 1).cast(pa.float64())),
        "updated_at": end,
        "batch_id": pa.array([batch_id] * n, pa.int64()),
    }
    assert list(columns) == [name for name, _ in ENGAGEMENT_COLUMNS]
    return pa.table(columns)


@dataclass
class Result:
    batch: str
    rows: int
    bulk_s: float
    baseline_s: float | None


def _baseline_sql(table: str) -> str:
    names = ", ".join(COLUMN_NAMES)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMN_NAMES if c not in KEY)
    placeholders = ", ".join(["%s"] * len(COLUMN_NAMES))
    return (
        f"INSERT INTO {table} ({names}) VALUES ({placeholders}) "
        f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {updates}"
    )


def run(url: str, password: str | None, rows: int, batches: int, workdir: Path) -> list[Result]:
    import psycopg

    settings = parse_postgres_url(url)
    schema = settings.schema
    wh = PostgresWarehouse(settings, password=password)
    wh.init()
    conn = psycopg.connect(
        host=settings.host,
        port=settings.port,
        dbname=settings.database,
        user=settings.user,
        password=password,
        passfile=os.devnull,
    )
    baseline_table = f"{schema}.engagement_executemany"
    with conn.transaction():
        conn.execute(f"DROP TABLE IF EXISTS {baseline_table}")
        conn.execute(f"CREATE TABLE {baseline_table} (LIKE {wh.table} INCLUDING ALL)")
        conn.execute(f"TRUNCATE {wh.table}, {wh.ledger_table}")

    per_batch = rows // batches
    plan: list[tuple[str, int, pa.Table]] = [
        (f"{n} new keys", n, engagement_batch(n, per_batch, first_window=(n - 1) * WINDOWS_PER_BATCH))
        for n in range(1, batches + 1)
    ]
    plan.append(("update batch 1", batches + 1, engagement_batch(batches + 1, per_batch, 0, bump=3)))
    insert = _baseline_sql(baseline_table)
    results = []
    staged: dict[int, StagedBatch] = {}
    for label, batch_id, table in plan:
        path = workdir / f"batch_id={batch_id}" / "part-00000.snappy.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        batch = StagedBatch("bench", batch_id, str(path.parent), (str(path),), table.num_rows)
        staged[batch_id] = batch

        started = time.perf_counter()
        assert wh.load_batch(batch)
        bulk = time.perf_counter() - started

        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            for record_batch in iter_record_batches(batch.files):
                cur.executemany(
                    insert, list(zip(*(c.to_pylist() for c in record_batch.columns), strict=True))
                )
        baseline = time.perf_counter() - started
        results.append(Result(label, table.num_rows, bulk, baseline))

    started = time.perf_counter()
    assert not wh.load_batch(staged[1])
    results.append(Result("replay of batch 1", staged[1].rows, time.perf_counter() - started, None))

    with conn.cursor() as cur:
        cur.execute(f"SELECT SUM(impressions), COUNT(*) FROM {wh.table}")
        bulk_state = cur.fetchone()
        cur.execute(f"SELECT SUM(impressions), COUNT(*) FROM {baseline_table}")
        baseline_state = cur.fetchone()
    assert bulk_state == baseline_state, (bulk_state, baseline_state)
    conn.close()
    wh.close()
    return results


def render(results: list[Result]) -> str:
    lines = [
        "| batch | rows | bulk path s | bulk rows/s | executemany s | executemany rows/s | speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        bulk_rate = f"{r.rows / r.bulk_s:,.0f}" if r.baseline_s is not None else "(ledger skip)"
        if r.baseline_s is None:
            lines.append(f"| {r.batch} | {r.rows:,} | {r.bulk_s:.3f} | {bulk_rate} | | | |")
            continue
        lines.append(
            f"| {r.batch} | {r.rows:,} | {r.bulk_s:.2f} | {bulk_rate} | {r.baseline_s:.2f} | "
            f"{r.rows / r.baseline_s:,.0f} | {r.baseline_s / r.bulk_s:.1f}x |"
        )
    return "\n".join(lines)


@contextmanager
def _server(url: str | None) -> Iterator[tuple[str, str | None]]:
    if url:
        yield url, password_from_env()
        return
    if str(REPO) not in sys.path:  # the private server helper lives with the tests
        sys.path.insert(0, str(REPO))
    from tests.sinks.warehouse.pgserver import private_postgres

    with private_postgres(durable=True) as server:
        yield server.url("bench"), server.password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows over all new-key batches")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--url", help="postgresql://user@host:port/db?schema=bench (password from env)")
    args = parser.parse_args(argv)
    with _server(args.url) as (url, password), tempfile.TemporaryDirectory() as workdir:
        results = run(url, password, args.rows, args.batches, Path(workdir))
    print(render(results))  # the table is this tool's output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
