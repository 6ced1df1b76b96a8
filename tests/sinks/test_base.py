"""The batch writer: every sink writes the batch, cached while they do; a count only when asked for."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from pyspark.sql import DataFrame

from sinks.base import BatchWriter, SinkError, write_all

IDS = ["e1", "e2", "e3"]


@dataclass
class Recording:
    """A sink that remembers what it was given; with ``read``, it also counts the batch's rows."""

    name: str
    read: bool = False
    seen: list[tuple[int, bool, int | None]] = field(default_factory=list)

    def write(self, batch: DataFrame, batch_id: int) -> None:
        self.seen.append((batch_id, batch.is_cached, batch.count() if self.read else None))


@dataclass
class Failing:
    name: str = "failing"

    def write(self, batch: DataFrame, batch_id: int) -> None:
        raise SinkError(f"{self.name} sink failed on batch {batch_id}")


def frame(spark) -> DataFrame:
    return spark.createDataFrame([(i,) for i in IDS], "event_id string")


def test_a_counted_write_returns_the_rows_every_sink_wrote_from_the_cached_batch(spark):
    batch = frame(spark)
    sinks = [Recording("a", read=True), Recording("b", read=True)]

    rows = write_all(sinks, batch, 4, count=True)

    assert rows == len(IDS)
    assert [s.seen for s in sinks] == [[(4, True, len(IDS))], [(4, True, len(IDS))]]
    assert not batch.is_cached


def test_an_uncounted_write_runs_no_spark_job_beyond_the_sinks(spark):
    batch = frame(spark)
    sink = Recording("a")
    context = spark.sparkContext
    context.setJobGroup("uncounted-write", "write_all without count")
    try:
        returned = BatchWriter((sink,))(batch, 2)
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)

    assert returned is None
    assert sink.seen == [(2, True, None)]
    assert list(context.statusTracker().getJobIdsForGroup("uncounted-write")) == []


def test_a_failing_sink_propagates_and_the_batch_is_uncached(spark):
    batch = frame(spark)

    with pytest.raises(SinkError, match="failing sink failed on batch 9"):
        write_all([Recording("a"), Failing()], batch, 9)

    assert not batch.is_cached


def test_a_batch_that_is_not_persisted_is_not_counted(spark):
    with pytest.raises(ValueError, match="persisted batch only"):
        write_all([Recording("a")], frame(spark), 1, persist=False, count=True)  # type: ignore[call-overload]
