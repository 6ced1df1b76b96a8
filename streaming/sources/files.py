"""Stage 1 (local and Firehose-style): newline-delimited JSON files, plain or .gz, any folder nesting."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from streaming.config import FilesSourceConfig
from streaming.storage import path_exists


class SourceError(ValueError):
    """The configured source cannot be read."""


def read_files(spark: SparkSession, cfg: FilesSourceConfig) -> DataFrame:
    """A stream of raw records (``value, source, ingest_time``) from every file below ``cfg.path``.

    Gzip is decompressed by file extension; ``YYYY/MM/DD/HH/`` sub-folders are walked; at most
    ``max_files_per_trigger`` new files enter each micro-batch, oldest first.
    """
    if not path_exists(spark, cfg.path):
        raise SourceError(
            f"source.path {cfg.path!r} does not exist (create it, or point source.path elsewhere)"
        )
    lines = (
        spark.readStream.format("text")
        .option("recursiveFileLookup", "true")
        .option("maxFilesPerTrigger", cfg.max_files_per_trigger)
        .load(cfg.path)
    )
    return lines.select(
        F.col("value"),
        F.col("_metadata.file_path").alias("source"),
        F.current_timestamp().alias("ingest_time"),
    )
