"""A Kinesis streaming source written with PySpark's Python Data Source API, on boto3.

Registered as ``mediapulse-kinesis`` (a Python source cannot take a name the JVM already knows, such as
the connector's ``aws-kinesis``). It yields the connector's schema.

How a micro-batch is read: Spark asks the driver-side reader for the latest offset; the reader reads the
new records right then (in parallel over shards, paced per shard, bounded by ``max_records_per_trigger``
rows and ``max_fetch_time``) and returns the offset they end at. Spark hands those very records to the
batch as Arrow data, so each record is fetched from Kinesis once. Only when a batch is replayed from the
checkpoint after a restart does a task re-read it, and then exactly the same records: per shard, after the
batch's start sequence number up to and including its end sequence number.

PySpark 4.0 has no admission control or ``Trigger.AvailableNow`` support for Python streams, so the bound
lives in the reader, and ``availableNow`` runs one bounded batch (see docs/kinesis.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.datasource import DataSource, SimpleDataSourceStreamReader
from pyspark.sql.types import StructType

from streaming.config import KinesisSourceConfig
from streaming.sources.kinesis.client import GET_RECORDS_PER_SECOND, READ_BYTES_PER_SECOND, RetryPolicy
from streaming.sources.kinesis.errors import KinesisSourceError
from streaming.sources.kinesis.offsets import KinesisOffset, timestamp_ms
from streaming.sources.kinesis.records import KINESIS_SCHEMA
from streaming.sources.kinesis.shards import FetchSettings, StreamFetcher

logger = logging.getLogger(__name__)

SHORT_NAME = "mediapulse-kinesis"


def _millis(seconds: float) -> str:
    return str(round(seconds * 1000))


def source_options(cfg: KinesisSourceConfig, latest_ms: int | None = None) -> dict[str, str]:
    """``KinesisSourceConfig`` -> this source's options (strings, as Spark passes them).

    ``latest_ms`` pins ``LATEST`` to that time (epoch milliseconds) instead of the first offset's.
    """
    if not cfg.stream_name:
        raise KinesisSourceError("source.stream_name is required for the Kinesis source")
    if cfg.consumer_type != "polling":
        raise KinesisSourceError(
            "source.consumer_type 'efo' (SubscribeToShard) needs source.implementation 'connector'; "
            "the Python source polls with GetRecords"
        )
    options = {
        "streamName": cfg.stream_name,
        "startingPosition": cfg.starting_position,
        "maxRecordsPerTrigger": str(cfg.max_records_per_trigger),
        "getRecordsPerSecond": str(cfg.get_records_per_second),
        "maxFetchTimeMs": _millis(cfg.max_fetch_time.total_seconds()),
        "maxRetries": str(cfg.max_retries),
        "retryBaseDelayMs": _millis(cfg.retry_base_delay.total_seconds()),
        "retryMaxDelayMs": _millis(cfg.retry_max_delay.total_seconds()),
        "failOnDataLoss": "true" if cfg.fail_on_data_loss else "false",
    }
    if cfg.region:
        options["region"] = cfg.region
    if cfg.endpoint_url:
        options["endpointUrl"] = cfg.endpoint_url
    if cfg.starting_position == "AT_TIMESTAMP" and cfg.starting_timestamp:
        options["startingTimestampMs"] = str(timestamp_ms(cfg.starting_timestamp))
    elif cfg.starting_position == "LATEST" and latest_ms is not None:
        options["startingTimestampMs"] = str(latest_ms)
    return options


def settings_from_options(options: Mapping[str, str]) -> FetchSettings:
    """This source's options (any key case) -> :class:`FetchSettings`."""
    lowered = {key.lower(): value for key, value in options.items()}

    def number(key: str, default: float) -> float:
        raw = lowered.get(key.lower())
        try:
            return default if raw is None else float(raw)
        except ValueError as e:
            raise KinesisSourceError(f"{SHORT_NAME} option {key}={raw!r} is not a number") from e

    stream = lowered.get("streamname")
    if not stream:
        raise KinesisSourceError(f"{SHORT_NAME} needs the streamName option")
    position = lowered.get("startingposition", "TRIM_HORIZON").upper()
    if position not in ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"):
        raise KinesisSourceError(f"{SHORT_NAME}: unknown startingPosition {position!r}")
    start_ms = lowered.get("startingtimestampms")
    if position == "AT_TIMESTAMP" and start_ms is None:
        raise KinesisSourceError(f"{SHORT_NAME}: startingPosition AT_TIMESTAMP needs startingTimestampMs")
    calls_per_second = number("getRecordsPerSecond", GET_RECORDS_PER_SECOND)
    if calls_per_second != int(calls_per_second) or not 1 <= calls_per_second <= GET_RECORDS_PER_SECOND:
        raise KinesisSourceError(
            f"{SHORT_NAME} option getRecordsPerSecond={calls_per_second:g} must be a whole number "
            f"from 1 to {GET_RECORDS_PER_SECOND} (the Kinesis quota per shard)"
        )
    return FetchSettings(
        stream=stream,
        region=lowered.get("region"),
        endpoint_url=lowered.get("endpointurl"),
        starting_position=position,
        starting_timestamp_ms=None if start_ms is None else int(start_ms),
        max_records_per_trigger=int(number("maxRecordsPerTrigger", 100_000)),
        max_fetch_time=number("maxFetchTimeMs", 10_000) / 1000,
        retry=RetryPolicy(
            max_retries=int(number("maxRetries", 8)),
            base_delay=number("retryBaseDelayMs", 200) / 1000,
            max_delay=number("retryMaxDelayMs", 5000) / 1000,
        ),
        fail_on_data_loss=lowered.get("failondataloss", "true").lower() != "false",
        get_records_per_second=int(calls_per_second),
        read_bytes_per_second=number("readBytesPerSecond", READ_BYTES_PER_SECOND),
    )


@dataclass
class _Prefetch:
    """The next trigger's records, read in the background while Spark processes the current batch."""

    base: KinesisOffset
    thread: threading.Thread
    batches: list[pa.RecordBatch] = field(default_factory=list)
    end: KinesisOffset | None = None
    error: Exception | None = None


class KinesisStreamReader(SimpleDataSourceStreamReader):
    """Reads new records when Spark asks for the latest offset; replays a batch's exact range on demand.

    While the stream has a backlog (a trigger read all the rows it was allowed), the next trigger's
    records are read in the background as soon as the current offset is returned, so Kinesis reads and
    Spark's processing overlap. Near the tip of the stream nothing is read ahead, so nothing goes stale.
    """

    def __init__(self, settings: FetchSettings) -> None:
        self.settings = settings
        self._fetcher: StreamFetcher | None = None
        self._prefetch: _Prefetch | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Sent to tasks for replays: settings only, never a client, threads or cached iterators.
        return {"settings": self.settings, "_fetcher": None, "_prefetch": None}

    @property
    def fetcher(self) -> StreamFetcher:
        if self._fetcher is None:
            self._fetcher = StreamFetcher(self.settings)
        return self._fetcher

    def initialOffset(self) -> dict:
        offset = self.fetcher.initial_offset()
        logger.info("kinesis %s: starting at %s", self.settings.stream, offset.to_json())
        return offset.to_dict()

    def read(self, start: dict) -> tuple[Iterator[pa.RecordBatch], dict]:
        offset = KinesisOffset.from_dict(start, stream=self.settings.stream)
        batches, end = self._take_prefetched(offset)
        limit = self.settings.max_records_per_trigger
        rows = sum(batch.num_rows for batch in batches)
        if rows < limit:  # nothing read ahead, or it caught up: read (the rest) now
            more, end = self.fetcher.fetch(end, max_rows=limit - rows)
            batches.extend(more)
            rows += sum(batch.num_rows for batch in more)
        if rows >= limit:
            self._start_prefetch(end)
        return iter(batches), end.to_dict()

    def _start_prefetch(self, base: KinesisOffset) -> None:
        def run() -> None:
            try:
                prefetch.batches, prefetch.end = self.fetcher.fetch(base)
            except Exception as e:  # handed to the next trigger, which raises it
                prefetch.error = e

        prefetch = _Prefetch(base, threading.Thread(target=run, name="kinesis-prefetch", daemon=True))
        self._prefetch = prefetch
        prefetch.thread.start()

    def _take_prefetched(self, start: KinesisOffset) -> tuple[list[pa.RecordBatch], KinesisOffset]:
        prefetch, self._prefetch = self._prefetch, None
        if prefetch is None:
            return [], start
        prefetch.thread.join()  # the fetcher is not shared between threads
        if prefetch.base != start:  # Spark asked for something else (a restart): drop what was read
            return [], start
        if prefetch.error is not None:
            raise prefetch.error
        assert prefetch.end is not None
        return prefetch.batches, prefetch.end

    def readBetweenOffsets(self, start: dict, end: dict) -> Iterator[pa.RecordBatch]:
        stream = self.settings.stream
        return self.fetcher.replay(
            KinesisOffset.from_dict(start, stream=stream), KinesisOffset.from_dict(end, stream=stream)
        )

    def commit(self, end: dict) -> None:
        logger.debug("kinesis %s: committed %s", self.settings.stream, end)


class KinesisDataSource(DataSource):
    """``spark.readStream.format("mediapulse-kinesis").option("streamName", ...)``."""

    @classmethod
    def name(cls) -> str:
        return SHORT_NAME

    def schema(self) -> StructType:
        return KINESIS_SCHEMA

    def simpleStreamReader(self, schema: StructType) -> SimpleDataSourceStreamReader:
        return KinesisStreamReader(settings_from_options(self.options))


def read_python(spark: SparkSession, cfg: KinesisSourceConfig, latest_ms: int | None = None) -> DataFrame:
    """The stream through the Python source. Fails at once, naming it, if the stream does not exist.

    ``latest_ms`` pins ``LATEST`` (see :func:`source_options`)."""
    options = source_options(cfg, latest_ms)
    StreamFetcher(settings_from_options(options)).list_shards(fresh=True)
    spark.dataSource.register(KinesisDataSource)
    return spark.readStream.format(SHORT_NAME).options(**options).load()
