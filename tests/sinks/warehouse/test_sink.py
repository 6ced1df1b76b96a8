"""The warehouse sink: each attempt at a batch stages under a prefix of its own, and removes only that."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from sinks.warehouse.base import StagedBatch
from sinks.warehouse.sink import WarehouseSink
from tests.sinks.warehouse.data import arrow_table, make_rows
from tests.sinks.warehouse.stub import StubWarehouse


def engagement_frame(spark: SparkSession, batch_id: int) -> DataFrame:
    return spark.createDataFrame(arrow_table(make_rows(batch_id)).to_pandas())


class Recording(StubWarehouse):
    """Keeps what it was asked to load, and what was staged at that moment."""

    def __init__(self) -> None:
        self.loaded: list[tuple[StagedBatch, list[str]]] = []

    def load_batch(self, batch: StagedBatch) -> bool:
        self.loaded.append((batch, sorted(p.name for p in Path(batch.uri).iterdir())))
        return True


def test_two_attempts_at_one_batch_stage_under_their_own_prefixes(spark: SparkSession, tmp_path: Any) -> None:
    sink = WarehouseSink("warehouse", "engagement", str(tmp_path / "staging"), Recording)
    frame = engagement_frame(spark, 7)

    rows = frame.count()
    first, second = sink.stage(frame, 7, rows), sink.stage(frame, 7, rows)  # a replay, or a second driver

    assert first.uri != second.uri
    assert (
        Path(first.uri).parent
        == Path(second.uri).parent
        == tmp_path / "staging" / "engagement" / "batch_id=7"
    )
    assert Path(first.uri).name.startswith("attempt=")
    for staged in (first, second):
        assert staged.files and all(Path(f.removeprefix("file:")).exists() for f in staged.files)
        assert staged.rows == len(make_rows(7))


def test_a_load_removes_its_own_local_staging_only(spark: SparkSession, tmp_path: Any) -> None:
    warehouse = Recording()
    sink = WarehouseSink("warehouse", "engagement", str(tmp_path / "staging"), lambda: warehouse)
    frame = engagement_frame(spark, 3)
    other = sink.stage(frame, 3, frame.count())  # another attempt at the same batch, still in flight

    sink.write(frame, 3)

    [(batch, listing)] = warehouse.loaded
    assert batch.uri != other.uri and listing == ["engagement"]
    assert not Path(batch.uri).exists()
    assert Path(other.uri).exists()
