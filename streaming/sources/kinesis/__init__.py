"""Kinesis Data Streams as a streaming DataFrame in the awslabs connector's schema.

Two implementations yield the same frame (``data binary, streamName string, partitionKey string,
sequenceNumber string, approximateArrivalTimestamp timestamp``):

``connector``
    the awslabs spark-sql-kinesis-connector (JVM; needs its jar on the cluster), format ``aws-kinesis``;
``python``
    this package's Python Data Source on boto3, format ``mediapulse-kinesis``.

``source.implementation: auto`` takes the connector when its class loads in the JVM, else the Python
source. Their checkpointed offsets are not interchangeable, so the first run writes which one it used to
``<checkpoint>/source-implementation`` and later runs with the other one are refused.
"""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from streaming.config import SourceConfig
from streaming.sources.kinesis.connector import connector_available, read_connector
from streaming.sources.kinesis.errors import (
    ImplementationMismatchError,
    KinesisDataLossError,
    KinesisSourceError,
    KinesisThrottledError,
    StreamNotFoundError,
)
from streaming.sources.kinesis.python_source import read_python
from streaming.sources.kinesis.records import KINESIS_SCHEMA
from streaming.storage import hadoop_path

__all__ = [
    "KINESIS_SCHEMA",
    "MARKER_FILE",
    "ImplementationMismatchError",
    "KinesisDataLossError",
    "KinesisSourceError",
    "KinesisThrottledError",
    "StreamNotFoundError",
    "choose_implementation",
    "claim_checkpoint",
    "read_kinesis",
]

logger = logging.getLogger(__name__)

MARKER_FILE = "source-implementation"


def choose_implementation(spark: SparkSession, cfg: SourceConfig) -> str:
    """``connector`` or ``python``, resolving ``auto`` by whether the connector's class loads."""
    if cfg.implementation == "connector":
        if not connector_available(spark):
            raise KinesisSourceError(
                "source.implementation is 'connector' but the spark-sql-kinesis-connector jar is not on the "
                "classpath; add it to the cluster or use implementation 'python' (or 'auto')"
            )
        return "connector"
    if cfg.implementation == "python":
        return "python"
    return "connector" if connector_available(spark) else "python"


def _hadoop_path(spark: SparkSession, path: str) -> tuple[Any, Any]:
    """A Hadoop ``Path`` and its ``FileSystem``: the same storage Spark writes the checkpoint to."""
    try:
        return hadoop_path(spark, path)
    except RuntimeError as e:
        raise KinesisSourceError(str(e)) from e


def claim_checkpoint(spark: SparkSession, checkpoint_path: str, implementation: str) -> None:
    """Record ``implementation`` in the query's checkpoint, refusing one that another implementation wrote.

    Works wherever the checkpoint can live (local paths, ``s3://`` / ``s3a://`` with the cluster's S3
    file system, HDFS) because it goes through the same Hadoop file system as Spark's own checkpoint.
    A marker for the other implementation in a checkpoint that has no offsets yet is simply replaced.
    """
    jvm = spark._jvm
    root, fs = _hadoop_path(spark, checkpoint_path)
    marker = jvm.org.apache.hadoop.fs.Path(root, MARKER_FILE)
    offsets = jvm.org.apache.hadoop.fs.Path(root, "offsets")
    has_offsets = bool(fs.exists(offsets) and len(fs.listStatus(offsets)) > 0)
    if fs.exists(marker):
        stream = fs.open(marker)
        try:
            found = str(jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")).strip()
        finally:
            stream.close()
        if found == implementation:
            return
        if has_offsets:
            raise ImplementationMismatchError(
                f"checkpoint {checkpoint_path} was written by the {found!r} Kinesis source, but this run "
                f"uses {implementation!r}; their offsets are not interchangeable. Set "
                f"source.implementation={found}, or start a new checkpoint location."
            )
    elif has_offsets:
        raise ImplementationMismatchError(
            f"checkpoint {checkpoint_path} holds offsets but no {MARKER_FILE} marker: it was not written by "
            "a Kinesis source of this version. Start a new checkpoint location for the Kinesis source."
        )
    fs.mkdirs(root)
    out = fs.create(marker, True)
    try:
        out.write(f"{implementation}\n".encode())
    finally:
        out.close()
    logger.info("kinesis: checkpoint %s claimed by the %s implementation", checkpoint_path, implementation)


def read_kinesis(spark: SparkSession, cfg: SourceConfig, checkpoint_path: str) -> DataFrame:
    """The configured stream as a streaming DataFrame in the connector's schema.

    ``checkpoint_path`` is the ``checkpointLocation`` of the query that consumes the frame.
    """
    implementation = choose_implementation(spark, cfg)
    frame = read_connector(spark, cfg) if implementation == "connector" else read_python(spark, cfg)
    claim_checkpoint(spark, checkpoint_path, implementation)
    logger.info("kinesis: reading stream %s with the %s implementation", cfg.stream_name, implementation)
    return frame
