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
import time

from pyspark.sql import DataFrame, SparkSession

from streaming.config import KinesisSourceConfig
from streaming.sources.kinesis.checkpoint import MARKER_FILE, claim_checkpoint, pinned_start_ms
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


def choose_implementation(spark: SparkSession, cfg: KinesisSourceConfig) -> str:
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


def read_kinesis(spark: SparkSession, cfg: KinesisSourceConfig, checkpoint_path: str) -> DataFrame:
    """The configured stream as a streaming DataFrame in the connector's schema.

    ``checkpoint_path`` is the ``checkpointLocation`` of the query that consumes the frame. With the
    Python source, ``LATEST`` is pinned to now for a checkpoint whose first batch is not planned yet, and
    to the time its offsets carry otherwise, so a replayed first batch reads the records it read before.
    """
    implementation = choose_implementation(spark, cfg)
    if implementation == "connector":
        frame = read_connector(spark, cfg)
    elif cfg.starting_position == "LATEST":
        pinned = pinned_start_ms(spark, checkpoint_path)
        if pinned is not None:
            logger.info("kinesis: LATEST stays pinned to %d ms, as the checkpoint's offsets say", pinned)
        frame = read_python(spark, cfg, latest_ms=int(time.time() * 1000) if pinned is None else pinned)
    else:
        frame = read_python(spark, cfg)
    claim_checkpoint(spark, checkpoint_path, implementation)
    logger.info("kinesis: reading stream %s with the %s implementation", cfg.stream_name, implementation)
    return frame
