"""Parquet lake sink (local path or ``s3://``): one folder per partition and batch.

Each batch is written under ``…/<partition columns>/batch_id=<id>/`` with dynamic partition overwrite,
so a replayed batch replaces exactly its own earlier output and never duplicates it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sinks.base import SinkError


@dataclass(frozen=True)
class LakeSink:
    """Writes ``prepare(batch)`` to ``path`` partitioned by ``partition_by`` + ``batch_id``."""

    name: str
    path: str
    partition_by: Sequence[str]
    prepare: Callable[[DataFrame], DataFrame]

    def write(self, batch: DataFrame, batch_id: int) -> None:
        frame = self.prepare(batch).withColumn("batch_id", F.lit(batch_id).cast("bigint"))
        try:
            (
                frame.write.mode("overwrite")
                .option("partitionOverwriteMode", "dynamic")
                .partitionBy(*self.partition_by, "batch_id")
                .parquet(self.path)
            )
        except Exception as e:
            raise SinkError(f"lake sink {self.name!r} failed on batch {batch_id} at {self.path}: {e}") from e
