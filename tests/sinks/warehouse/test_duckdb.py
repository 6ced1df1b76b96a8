"""The load protocol on the embedded DuckDB backend: the same transaction, ledger and MERGE as the server
backends, with DuckDB reading the staged Parquet files itself."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from sinks.warehouse.analytics import Slice
from sinks.warehouse.base import (
    COLUMN_NAMES,
    ENGAGEMENT_COLUMNS,
    KEY,
    StagedBatch,
    WarehouseError,
    WarehouseMissingError,
)
from sinks.warehouse.duckdb import DuckDBWarehouse
from tests.sinks.warehouse.data import T0, apply_batches, as_tuples, daily_rows, make_rows, write_local_batch

DUCKDB_TYPES = {
    "timestamp": "TIMESTAMP",
    "string": "VARCHAR",
    "bigint": "BIGINT",
    "int": "INTEGER",
    "double": "DOUBLE",
}


def read(path: Path, statement: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(statement).fetchall()


def target(path: Path) -> list[tuple[Any, ...]]:
    return read(path, f"SELECT {', '.join(COLUMN_NAMES)} FROM content_engagement ORDER BY {', '.join(KEY)}")


def ledger(path: Path) -> list[tuple[Any, ...]]:
    return read(path, "SELECT query_name, batch_id, rows FROM mediapulse_batches ORDER BY batch_id")


def load(path: Path, *batches: StagedBatch) -> list[bool]:
    with DuckDBWarehouse(str(path)) as wh:
        return [wh.load_batch(batch) for batch in batches]


def test_init_creates_the_target_with_the_schema_columns_and_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    DuckDBWarehouse(str(path)).close()

    columns = read(
        path,
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'content_engagement' ORDER BY ordinal_position",
    )
    assert columns == [(name, DUCKDB_TYPES[kind]) for name, kind in ENGAGEMENT_COLUMNS]
    assert ledger(path) == []


def test_replayed_batch_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    rows = make_rows(1)
    batch = write_local_batch(tmp_path, "engagement", 1, [rows[:7], rows[7:]])

    assert load(path, batch, batch) == [True, False]

    assert target(path) == as_tuples(apply_batches([rows]))
    assert ledger(path) == [("engagement", 1, len(rows))]
    with DuckDBWarehouse(str(path), read_only=True) as wh:
        assert wh.committed("engagement") == [1]


def test_later_batch_replaces_matched_rows_and_adds_new_ones(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    first = make_rows(1, contents=("c1", "c2"))
    second = make_rows(2, contents=("c2", "c3"), seed=5)

    load(path, write_local_batch(tmp_path, "engagement", 1, [first]))
    load(path, write_local_batch(tmp_path, "engagement", 2, [second]))

    assert target(path) == as_tuples(apply_batches([first, second]))


def test_duplicate_keys_in_one_batch_keep_the_newest_row(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    rows = make_rows(3, contents=("c1",), affiliates=("a1",), windows=1, platforms=("web",))
    older = {**rows[0], "impressions": 1, "updated_at": rows[0]["updated_at"].replace(second=0)}
    newer = {**rows[0], "impressions": 999}

    assert load(path, write_local_batch(tmp_path, "engagement", 3, [[older], [newer]])) == [True]

    assert target(path) == as_tuples(apply_batches([[older, newer]]))
    assert ledger(path) == [("engagement", 3, 2)]


def test_empty_batch_is_recorded_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"

    assert load(path, StagedBatch("engagement", 4, str(tmp_path / "nothing"))) == [True]

    assert target(path) == []
    assert ledger(path) == [("engagement", 4, 0)]


def test_a_failed_load_leaves_nothing_and_names_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    batch = write_local_batch(tmp_path, "engagement", 5, [make_rows(5)])
    Path(batch.files[0]).unlink()

    with pytest.raises(WarehouseError, match="load of engagement batch 5 failed"):
        load(path, batch)

    assert target(path) == []
    assert ledger(path) == []


def test_readers_create_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "data" / "w.duckdb"
    with pytest.raises(WarehouseMissingError, match="no DuckDB warehouse file"):
        DuckDBWarehouse(str(missing), read_only=True)
    assert list(tmp_path.iterdir()) == []

    bare = tmp_path / "bare.duckdb"
    duckdb.connect(str(bare)).close()
    with (
        DuckDBWarehouse(str(bare), read_only=True) as wh,
        pytest.raises(WarehouseMissingError, match=f"{bare} has no analyst views"),
    ):
        wh.top(Slice())
    assert read(bare, "SELECT count(*) FROM duckdb_tables()") == [(0,)]


def test_top_sums_each_content_over_its_windows(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    rows = make_rows(1)
    load(path, write_local_batch(tmp_path, "engagement", 1, [rows]))

    with DuckDBWarehouse(str(path), read_only=True) as wh:
        top = wh.top(Slice(), "impressions", 2).records()

    totals: dict[str, int] = {}
    for row in rows:
        totals[row["content_id"]] = totals.get(row["content_id"], 0) + row["impressions"]
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:2]
    assert [(r["content_id"], r["impressions"]) for r in top] == ranked


def test_administration_is_refused_by_name(tmp_path: Path) -> None:
    with DuckDBWarehouse(str(tmp_path / "w.duckdb")) as wh:
        with pytest.raises(WarehouseError, match="check supports postgresql:// and redshift://"):
            wh.check()
        with pytest.raises(WarehouseError, match="sync-dimensions supports postgresql:// and redshift://"):
            wh.sync_content_dim(lambda: pytest.fail("the dimension must not be read"))


def test_daily_viewers_are_replaced_by_key_and_a_replay_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    day = T0.replace(hour=0)
    keys = [("c1", "a1", "home_hero", "(all)"), ("(all)", "(all)", "(all)", "(all)")]
    first = daily_rows(1, day, keys)
    second = daily_rows(2, day, keys[1:], seed=4)  # the day's total, recomputed by a later batch
    watermark = T0 + timedelta(minutes=3)
    batch = write_local_batch(tmp_path, "engagement", 1, [make_rows(1)], first, watermark)
    load(path, batch)
    load(path, batch)  # a replay: skipped by the ledger
    load(path, write_local_batch(tmp_path, "engagement", 2, [make_rows(2)], second))

    got = read(path, "SELECT content_id, unique_viewers FROM daily_unique_viewers ORDER BY content_id")

    assert got == [("(all)", second[0]["unique_viewers"]), ("c1", first[0]["unique_viewers"])]
    assert read(path, "SELECT batch_id, watermark FROM mediapulse_batches ORDER BY batch_id") == [
        (1, watermark),
        (2, None),
    ]
    assert read(path, "SELECT DISTINCT watermark FROM v_engagement") == [(watermark,)]


def test_a_batch_of_many_row_groups_is_loaded_whole(tmp_path: Path) -> None:
    """A batch as large as a cold run's (hundreds of thousands of rows in several files, more than one of
    DuckDB's row groups) is merged whole: DuckDB 2.0.0 merged none of it, from a staging table filled in
    the same transaction, and the ledger still recorded the batch."""
    path = tmp_path / "w.duckdb"
    contents = [f"c{n:04d}" for n in range(1_000)]
    parts = [
        make_rows(1, contents, affiliates=[f"a{part}{n}" for n in range(10)], windows=3, seed=part)
        for part in range(4)
    ]  # 4 files of 60,000 rows, every key distinct
    day = T0.replace(hour=0)
    keys = [(row["content_id"], row["affiliate_id"], row["placement"], row["platform"]) for row in parts[0]]
    viewers = daily_rows(1, day, sorted(set(keys)))

    assert load(path, write_local_batch(tmp_path, "engagement", 1, parts, viewers)) == [True]

    rows = sum(len(part) for part in parts)
    assert read(path, "SELECT count(*) FROM content_engagement") == [(rows,)]
    assert read(path, "SELECT count(*) FROM daily_unique_viewers") == [(len(viewers),)]
    assert ledger(path) == [("engagement", 1, rows)]
