"""Stage 1: sources. Every source yields the raw frame ``value string, source string, ingest_time``."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from streaming.config import SourceConfig


def kinesis_to_raw(records: DataFrame) -> DataFrame:
    """The Kinesis connector schema -> raw records; ``source`` names stream, partition key and sequence."""
    return records.select(
        F.col("data").cast("string").alias("value"),
        F.concat(
            F.lit("kinesis://"), F.concat_ws("/", "streamName", "partitionKey", "sequenceNumber")
        ).alias("source"),
        F.current_timestamp().alias("ingest_time"),
    )


def read_source(spark: SparkSession, cfg: SourceConfig, checkpoint_path: str) -> DataFrame:
    """The configured source as a stream of raw records."""
    if cfg.kind == "files":
        from streaming.sources.files import read_files

        return read_files(spark, cfg)
    from streaming.sources.kinesis import read_kinesis

    return kinesis_to_raw(read_kinesis(spark, cfg, checkpoint_path))
