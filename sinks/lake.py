"""Parquet lake sink (local path or ``s3://``): one folder per partition and batch.

Each batch is written under ``…/<partition columns>/checkpoint_id=<c>/batch_id=<id>/`` with dynamic
partition overwrite, so a replayed batch replaces exactly its own earlier output and never duplicates it;
``checkpoint_id`` names the checkpoint that numbered the batch, so a new checkpoint (whose batch ids start
again at 0) never replaces the output of an old one.

Spark stages a write under ``_temporary/`` and ``.spark-staging-<job>/`` and moves whole partition
folders into place at commit; a process killed mid-write leaves those folders behind. Readers that glob
the partition layout (``events/event_date=*/event_hour=*/checkpoint_id=*/batch_id=*/*.parquet``) or
skip hidden folders (Spark, Athena, pyarrow) never see them, and the next write of the table removes
them, so a plain ``**/*.parquet`` glob (DuckDB) is also exact between batches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from sinks.base import SinkError
from streaming.storage import hadoop_path

# Folders Spark's file commit protocols stage a write in (see the module docstring).
STAGING_GLOBS = ("_temporary", ".spark-staging-*")


@dataclass(frozen=True)
class LakeSink:
    """Writes ``prepare(batch)`` to ``path`` partitioned by ``partition_by`` + ``checkpoint_id, batch_id``."""

    name: str
    path: str
    partition_by: Sequence[str]
    prepare: Callable[[DataFrame], DataFrame]
    checkpoint_id: str
    options: Mapping[str, str] = field(default_factory=dict)  # Parquet writer options

    def write(self, batch: DataFrame, batch_id: int) -> None:
        frame = (
            self.prepare(batch)
            .withColumn("checkpoint_id", F.lit(self.checkpoint_id))
            .withColumn("batch_id", F.lit(batch_id).cast("bigint"))
        )
        try:
            remove_leftovers(frame.sparkSession, self.path)
            (
                frame.write.mode("overwrite")
                .options(**self.options)
                .option("partitionOverwriteMode", "dynamic")
                .partitionBy(*self.partition_by, "checkpoint_id", "batch_id")
                .parquet(self.path)
            )
        except Exception as e:
            raise SinkError(f"lake sink {self.name!r} failed on batch {batch_id} at {self.path}: {e}") from e


def remove_leftovers(spark: SparkSession, path: str) -> list[str]:
    """Delete the staging folders an interrupted write left under ``path`` (this query is its only writer)."""
    removed = []
    for pattern in STAGING_GLOBS:
        resolved, fs = hadoop_path(spark, f"{path.rstrip('/')}/{pattern}")
        for status in fs.globStatus(resolved) or []:
            fs.delete(status.getPath(), True)
            removed.append(str(status.getPath()))
    return removed
