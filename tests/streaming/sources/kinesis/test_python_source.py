from __future__ import annotations

from datetime import timedelta

import pytest

from streaming.config import KinesisSourceConfig
from streaming.sources.kinesis.client import RetryPolicy
from streaming.sources.kinesis.errors import KinesisSourceError
from streaming.sources.kinesis.python_source import settings_from_options, source_options
from streaming.sources.kinesis.shards import FetchSettings


def test_config_reaches_the_reader_through_string_options() -> None:
    cfg = KinesisSourceConfig(
        kind="kinesis",
        stream_name="events",
        region="eu-west-1",
        endpoint_url="http://127.0.0.1:4567",
        starting_position="AT_TIMESTAMP",
        starting_timestamp="2024-01-01T00:00:00Z",
        max_records_per_trigger=5000,
        max_fetch_time=timedelta(seconds=4),
        max_retries=3,
        retry_base_delay=timedelta(milliseconds=50),
        retry_max_delay=timedelta(seconds=2),
        fail_on_data_loss=False,
        get_records_per_second=2,
    )

    options = source_options(cfg)

    assert all(isinstance(value, str) for value in options.values())
    # Spark hands a Python data source its options with lower-cased keys.
    assert settings_from_options({key.lower(): value for key, value in options.items()}) == FetchSettings(
        stream="events",
        region="eu-west-1",
        endpoint_url="http://127.0.0.1:4567",
        starting_position="AT_TIMESTAMP",
        starting_timestamp_ms=1_704_067_200_000,
        max_records_per_trigger=5000,
        max_fetch_time=4.0,
        retry=RetryPolicy(max_retries=3, base_delay=0.05, max_delay=2.0),
        fail_on_data_loss=False,
        get_records_per_second=2,
    )


def test_options_without_a_stream_are_refused() -> None:
    with pytest.raises(KinesisSourceError, match="streamName"):
        settings_from_options({"region": "eu-west-1"})


def test_unknown_starting_position_is_refused() -> None:
    with pytest.raises(KinesisSourceError, match="unknown startingPosition"):
        settings_from_options({"streamName": "events", "startingPosition": "EARLIEST"})


@pytest.mark.parametrize("rate", ["0", "6", "2.5", "fast"])
def test_a_get_records_rate_outside_the_kinesis_quota_is_refused(rate: str) -> None:
    with pytest.raises(KinesisSourceError, match="getRecordsPerSecond"):
        settings_from_options({"streamName": "events", "getRecordsPerSecond": rate})
