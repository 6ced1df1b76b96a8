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
from datetime import date, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sinks.base import SinkError
from streaming.aggregate import GROUP_KEYS, daily_unique_viewers, placement_key
from streaming.schema import ENGAGEMENT
from streaming.storage import hadoop_path, path_exists

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
            # As text: a partition value is only a folder name (`batch_id=7`, read back as a number), and a
            # numeric constant would be written into the code Spark generates for the write, which would
            # then be compiled anew every micro-batch; a text constant is passed in by reference.
            .withColumn("batch_id", F.lit(str(batch_id)))
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


# The lake's engagement table as written by LakeSink (batch_id is a partition column there).
ENGAGEMENT_LAKE_SCHEMA = T.StructType(
    [
        *ENGAGEMENT.spark_schema().fields,
        T.StructField("window_date", T.DateType(), True),
        T.StructField("checkpoint_id", T.StringType(), True),
    ]
)
SKETCH_COLUMNS = ("window_start", *GROUP_KEYS, "viewers_sketch")


def read_engagement_sketches(spark: SparkSession, path: str, days: Sequence[date] | None = None) -> DataFrame:
    """The window sketches of the lake's engagement table (every version of each window), of ``days``
    only when given; empty when the table does not exist yet. Rows written before windows were keyed by
    placement read as :data:`streaming.schema.NO_PLACEMENT`."""
    if not path_exists(spark, path):
        return spark.createDataFrame([], ENGAGEMENT.spark_schema()).select(*SKETCH_COLUMNS)
    rows = spark.read.schema(ENGAGEMENT_LAKE_SCHEMA).parquet(path)
    if days is not None:
        rows = rows.filter(F.col("window_date").isin(list(days)))
    return rows.withColumn("placement", placement_key()).select(*SKETCH_COLUMNS)


@dataclass(frozen=True)
class LakeViewerRollups:
    """A batch of engagement rows -> the daily unique-viewer rows it changes, recomputed from every sketch
    of the days it touches in the lake's engagement table (which already holds the batch: the lake sink
    writes first). ``recomputed``: a backfill's range, whose windows come from the batch instead."""

    path: str
    recomputed: tuple[datetime, datetime] | None = None

    def __call__(self, batch: DataFrame) -> DataFrame:
        spark = batch.sparkSession
        days = [r[0] for r in batch.select(F.to_date("window_start")).distinct().collect()]
        sketches = read_engagement_sketches(spark, self.path, days)
        if self.recomputed is not None:
            start, end = self.recomputed
            outside = (F.col("window_start") < F.lit(start)) | (F.col("window_start") >= F.lit(end))
            sketches = sketches.filter(outside).unionByName(batch.select(*SKETCH_COLUMNS))
        return daily_unique_viewers(sketches, touched=batch)
