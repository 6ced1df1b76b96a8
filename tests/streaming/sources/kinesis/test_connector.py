from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from pyspark.sql import SparkSession

from streaming.config import KinesisSourceConfig
from streaming.sources.kinesis import choose_implementation
from streaming.sources.kinesis.connector import connector_available, connector_options
from streaming.sources.kinesis.errors import KinesisSourceError


def kinesis_config(**overrides: object) -> KinesisSourceConfig:
    values: dict[str, object] = {"kind": "kinesis", "stream_name": "events", "region": "eu-west-1"}
    values.update(overrides)
    return KinesisSourceConfig.model_validate(values)


def test_defaults_map_to_connector_options() -> None:
    assert connector_options(kinesis_config()) == {
        "kinesis.streamName": "events",
        "kinesis.endpointUrl": "https://kinesis.eu-west-1.amazonaws.com",
        "kinesis.region": "eu-west-1",
        "kinesis.kinesisRegion": "eu-west-1",
        "kinesis.startingPosition": "TRIM_HORIZON",
        "kinesis.consumerType": "GetRecords",
        "kinesis.failOnDataLoss": "true",
        "kinesis.maxFetchRecordsPerShard": "100000",
        "kinesis.maxFetchTimePerShardSec": "10",
        "kinesis.clientNumRetries": "8",
        "kinesis.clientRetryIntervalsMs": "200",
        "kinesis.clientMaxRetryIntervalMs": "5000",
        "kinesis.getRecords.fetchIntervalMs": "200",
    }


def test_custom_endpoint_gets_its_region_set_explicitly() -> None:
    options = connector_options(kinesis_config(endpoint_url="http://127.0.0.1:4567", region="us-east-1"))

    assert options["kinesis.endpointUrl"] == "http://127.0.0.1:4567"
    assert options["kinesis.region"] == options["kinesis.kinesisRegion"] == "us-east-1"


def test_custom_endpoint_without_region_is_refused() -> None:
    with pytest.raises(KinesisSourceError, match=r"source\.region is required"):
        connector_options(kinesis_config(endpoint_url="http://127.0.0.1:4567", region=None))


def test_fetch_time_is_never_below_the_connector_minimum() -> None:
    assert connector_options(kinesis_config(max_fetch_time="3 s"))["kinesis.maxFetchTimePerShardSec"] == "10"
    assert (
        connector_options(kinesis_config(max_fetch_time=timedelta(seconds=30.5)))[
            "kinesis.maxFetchTimePerShardSec"
        ]
        == "31"
    )


def test_efo_maps_to_subscribe_to_shard_with_its_consumer_name() -> None:
    options = connector_options(kinesis_config(consumer_type="efo", consumer_name="mediapulse"))

    assert options["kinesis.consumerType"] == "SubscribeToShard"
    assert options["kinesis.consumerName"] == "mediapulse"
    with pytest.raises(KinesisSourceError, match="consumer_name is required"):
        connector_options(kinesis_config(consumer_type="efo"))


def test_data_loss_can_be_tolerated() -> None:
    assert connector_options(kinesis_config(fail_on_data_loss=False))["kinesis.failOnDataLoss"] == "false"


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2024-03-01T12:30:05Z", "AT_TIMESTAMP 2024-03-01T12:30:05Z"),
        ("2024-03-01T13:30:05.900+01:00", "AT_TIMESTAMP 2024-03-01T12:30:05Z"),
    ],
)
def test_at_timestamp_is_given_in_utc(timestamp: str, expected: str) -> None:
    cfg = kinesis_config(starting_position="AT_TIMESTAMP", starting_timestamp=timestamp)

    assert connector_options(cfg)["kinesis.startingPosition"] == expected


def test_auto_picks_the_python_source_without_the_connector_jar(spark: SparkSession) -> None:
    assert not connector_available(spark)
    assert choose_implementation(spark, kinesis_config(implementation="auto")) == "python"


def test_connector_without_its_jar_is_refused(spark: SparkSession) -> None:
    with pytest.raises(KinesisSourceError, match="jar is not on the classpath"):
        choose_implementation(spark, kinesis_config(implementation="connector"))


def test_python_source_refuses_enhanced_fan_out(source_config: Callable[..., KinesisSourceConfig]) -> None:
    from streaming.sources.kinesis.python_source import source_options

    with pytest.raises(KinesisSourceError, match=r"needs source\.implementation 'connector'"):
        source_options(source_config("events", consumer_type="efo", consumer_name="mediapulse"))


def test_get_records_rate_maps_to_the_connector_fetch_interval() -> None:
    options = connector_options(kinesis_config(get_records_per_second=3))

    assert options["kinesis.getRecords.fetchIntervalMs"] == "334"  # never faster than 3 calls a second
