"""The awslabs spark-sql-kinesis-connector (format ``aws-kinesis``), for clusters that ship its jar."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from py4j.protocol import Py4JError
from pyspark.sql import DataFrame, SparkSession

from streaming.config import KinesisSourceConfig
from streaming.sources.kinesis.errors import KinesisSourceError
from streaming.sources.kinesis.offsets import timestamp_ms
from streaming.sources.kinesis.records import KINESIS_SCHEMA

CONNECTOR_FORMAT = "aws-kinesis"
CONNECTOR_PROVIDER_CLASS = "org.apache.spark.sql.connector.kinesis.KinesisV2TableProvider"
# The connector refuses a fetch-time bound under 10 s ("KDS sometimes takes more than 5s to respond").
MIN_FETCH_TIME_SECONDS = 10

_CONSUMER_TYPES = {"polling": "GetRecords", "efo": "SubscribeToShard"}


def _endpoint_and_region(cfg: KinesisSourceConfig) -> tuple[str, str]:
    if cfg.endpoint_url:
        if not cfg.region:
            # The connector would guess the region from an AWS host name; a custom endpoint has none.
            raise KinesisSourceError(
                f"source.region is required with the custom Kinesis endpoint {cfg.endpoint_url!r}"
            )
        return cfg.endpoint_url, cfg.region
    if not cfg.region:
        raise KinesisSourceError("source.region (or source.endpoint_url) is required for the Kinesis source")
    return f"https://kinesis.{cfg.region}.amazonaws.com", cfg.region


def _starting_position(cfg: KinesisSourceConfig) -> str:
    if cfg.starting_position != "AT_TIMESTAMP":
        return cfg.starting_position
    assert cfg.starting_timestamp is not None  # guaranteed by KinesisSourceConfig's validation
    moment = datetime.fromtimestamp(timestamp_ms(cfg.starting_timestamp) // 1000, UTC)
    return f"AT_TIMESTAMP {moment.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def connector_options(cfg: KinesisSourceConfig) -> dict[str, str]:
    """``KinesisSourceConfig`` -> the connector's ``kinesis.*`` options (read case-insensitively by it).

    ``max_records_per_trigger`` becomes ``kinesis.maxFetchRecordsPerShard``: the connector bounds each
    shard, not the whole trigger. ``failOnDataLoss`` defaults to true here (the connector's own default is
    false). The fetch-time bound is raised to the connector's 10 s minimum. ``get_records_per_second``
    becomes ``kinesis.getRecords.fetchIntervalMs``, the connector's minimum interval between two
    GetRecords calls of a shard's reader (its default, 200 ms, is the same 5 calls a second).
    """
    if not cfg.stream_name:
        raise KinesisSourceError("source.stream_name is required for the Kinesis source")
    endpoint, region = _endpoint_and_region(cfg)
    options = {
        "kinesis.streamName": cfg.stream_name,
        "kinesis.endpointUrl": endpoint,
        "kinesis.region": region,
        "kinesis.kinesisRegion": region,
        "kinesis.startingPosition": _starting_position(cfg),
        "kinesis.consumerType": _CONSUMER_TYPES[cfg.consumer_type],
        "kinesis.failOnDataLoss": "true" if cfg.fail_on_data_loss else "false",
        "kinesis.maxFetchRecordsPerShard": str(cfg.max_records_per_trigger),
        "kinesis.maxFetchTimePerShardSec": str(
            max(MIN_FETCH_TIME_SECONDS, math.ceil(cfg.max_fetch_time.total_seconds()))
        ),
        "kinesis.clientNumRetries": str(cfg.max_retries),
        "kinesis.clientRetryIntervalsMs": str(round(cfg.retry_base_delay.total_seconds() * 1000)),
        "kinesis.clientMaxRetryIntervalMs": str(round(cfg.retry_max_delay.total_seconds() * 1000)),
        "kinesis.getRecords.fetchIntervalMs": str(math.ceil(1000 / cfg.get_records_per_second)),
    }
    if cfg.consumer_type == "efo":
        if not cfg.consumer_name:
            raise KinesisSourceError("source.consumer_name is required with source.consumer_type 'efo'")
        options["kinesis.consumerName"] = cfg.consumer_name
    return options


def connector_available(spark: SparkSession) -> bool:
    """Whether the connector's provider class loads in this session's JVM (its jar is on the classpath)."""
    jvm = spark._jvm
    if jvm is None:
        return False
    try:
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        jvm.java.lang.Class.forName(CONNECTOR_PROVIDER_CLASS, False, loader)
    except Py4JError:
        return False
    return True


def read_connector(spark: SparkSession, cfg: KinesisSourceConfig) -> DataFrame:
    """The stream through the connector; fails if its schema is not the one the pipeline expects."""
    frame = spark.readStream.format(CONNECTOR_FORMAT).options(**connector_options(cfg)).load()
    found = [(f.name, f.dataType) for f in frame.schema.fields]
    expected = [(f.name, f.dataType) for f in KINESIS_SCHEMA.fields]
    if found != expected:
        raise KinesisSourceError(
            f"the {CONNECTOR_FORMAT} connector yields {frame.schema.simpleString()}, "
            f"expected {KINESIS_SCHEMA.simpleString()}: is it a different connector version?"
        )
    return frame
