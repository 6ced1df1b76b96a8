"""Query wiring: one reader of the source, three consumers of its validated records.

``ingest``
    source -> parse and validate (once per record) -> deduplicate valid events by event id within
    ``dedup.retention`` of arrival time -> Spark's own streaming file sink at ``<checkpoint>/records/``.
    Its ``_spark_metadata`` log lists the files of committed batches only, so its readers see each
    record exactly once. Per-batch metrics give records in = valid + quarantined.
``events``
    records -> ``<lake>/events/`` (valid events partitioned by event date and hour, late events
    included) and ``<lake>/quarantine/`` (raw text and reasons), one foreachBatch.
``engagement``
    valid records (already one per event id) joined with the content dimension and aggregated into
    tumbling windows behind the event-time watermark (update mode); one foreachBatch writes
    ``<lake>/engagement/`` and the warehouse. Events behind the watermark never change a closed window
    and are counted as late.

``viewers``
    valid records -> unique viewers per UTC day at every rollup level of content, affiliate, placement
    and platform (HLL sketches in the query's state, update mode) -> the warehouse's daily rollups.

The event log and the windows need separate queries because late events must reach the event log while
the windowed state must ignore them. Both read the typed records, never the source: on Kinesis there is
one consumer per shard. See docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import DataStreamWriter, StreamingQuery

from sinks.base import BatchWriter, Sink
from sinks.lake import LakeSink
from sinks.metrics import HealthMetrics, QuarantineReasons
from sinks.warehouse import Warehouse, open_warehouse
from sinks.warehouse.sink import WarehouseSink
from streaming.aggregate import daily_viewers_from_events
from streaming.checkpoints import ENGAGEMENT, EVENTS, INGEST, RECORDS, VIEWERS, checkpoint_dir, ledger_name
from streaming.config import AppConfig, spark_interval
from streaming.parse import valid_events
from streaming.schema import PLAIN_ENCODED_COLUMNS, RECORD_SCHEMA
from streaming.sources import read_source
from streaming.sources.content_dim import read_content_dimension
from streaming.storage import hadoop_path, parquet_options
from streaming.transforms import (
    engagement_from_events,
    engagement_rows,
    event_log_rows,
    quarantine_rows,
    stamp,
    validated_records,
)

__all__ = [
    "ENGAGEMENT", "EVENTS", "INGEST", "VIEWERS",
    "engagement_sinks", "events_sinks", "viewers_sinks",
]  # fmt: skip


# The record log keeps entries this many record retentions long (a day by default).
RECORDS_LOG_RETENTION_FACTOR = 24

# The viewers query aggregates 16 rows per event into one HLL sketch per day and rollup level. Past
# Spark's default of 128 sketches per task its aggregation sorts the whole batch first; at 500 k (about
# 125 MB of sketches per task) it sorts only beyond that. Measured on 1 M events, warm, that query alone:
# 24 s -> 16-18 s. The other aggregations keep the default, under which they were faster.
VIEWERS_SESSION_CONF = {"spark.sql.objectHashAggregate.sortBased.fallbackThreshold": "500000"}


@contextmanager
def session_conf(spark: SparkSession, conf: Mapping[str, str]) -> Iterator[None]:
    """Spark settings for the queries started inside: each query runs on a copy of the session made
    when it starts, so the settings stay with it and the session gets its own values back."""
    previous = {key: spark.conf.get(key, None) for key in conf}
    for key, value in conf.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def _millis(value: timedelta) -> int:
    return round(value.total_seconds() * 1000)


def records_path(cfg: AppConfig) -> str:
    return checkpoint_dir(cfg.checkpoint.path, RECORDS)


def events_sinks(cfg: AppConfig, checkpoint_id: str, metrics: HealthMetrics | None = None) -> list[Sink]:
    lake = cfg.lake.path.rstrip("/")
    options = parquet_options(PLAIN_ENCODED_COLUMNS)
    return [  # each reads the batch: the events query reports input rows per scan
        LakeSink(
            "events", f"{lake}/events", ("event_date", "event_hour"), event_log_rows, checkpoint_id, options
        ),
        LakeSink(
            "quarantine", f"{lake}/quarantine", ("ingest_date",), quarantine_rows, checkpoint_id, options
        ),
        *([QuarantineReasons("quarantine metrics", EVENTS, metrics)] if metrics else []),
    ]


def engagement_sinks(
    cfg: AppConfig, checkpoint_id: str, warehouse: Callable[[], Warehouse] | None = None
) -> list[Sink]:
    """The lake's engagement table and the warehouse; both key batches by the checkpoint's identity."""
    lake = cfg.lake.path.rstrip("/")
    return [
        LakeSink("engagement", f"{lake}/engagement", ("window_date",), engagement_rows, checkpoint_id),
        WarehouseSink(
            "warehouse",
            ledger_name(ENGAGEMENT, checkpoint_id),
            cfg.staging_path,
            warehouse or (lambda: open_warehouse(cfg.warehouse)),
            watermark_delay=cfg.engagement.watermark,
        ),
    ]


def viewers_sinks(
    cfg: AppConfig, checkpoint_id: str, warehouse: Callable[[], Warehouse] | None = None
) -> list[Sink]:
    """The warehouse's daily unique-viewer rollups (the lake keeps the windows' sketches)."""
    return [
        WarehouseSink(
            "warehouse",
            ledger_name(VIEWERS, checkpoint_id),
            cfg.staging_path,
            warehouse or (lambda: open_warehouse(cfg.warehouse)),
            daily_rows=True,
        )
    ]


def _writer(
    frame: DataFrame, name: str, cfg: AppConfig, interval: timedelta | None
) -> DataStreamWriter:
    """The query's writer: its checkpoint folder and trigger (``None``: available-now)."""
    writer = frame.writeStream.queryName(name).option(
        "checkpointLocation", checkpoint_dir(cfg.checkpoint.path, name)
    )
    if interval is None:
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=spark_interval(interval))


def start_ingest(spark: SparkSession, cfg: AppConfig, *, available_now: bool = False) -> StreamingQuery:
    """source -> validated records, written once with Spark's streaming file sink."""
    raw = read_source(spark, cfg.source, checkpoint_dir(cfg.checkpoint.path, INGEST))
    checks = cfg.validation
    records = validated_records(
        raw, checks.max_future_skew, cfg.dedup.retention, checks.event_types, checks.platforms
    )
    return (
        _writer(records, INGEST, cfg, None if available_now else cfg.trigger.interval)
        .outputMode("append")
        .format("parquet")
        .options(**parquet_options(PLAIN_ENCODED_COLUMNS))
        .option("path", records_path(cfg))
        # Metadata-log entries of files older than this are dropped at compaction, so the log its readers
        # list on every trigger stays small; the files themselves go after records_retention.
        .option("retention", f"{_millis(cfg.checkpoint.records_retention) * RECORDS_LOG_RETENTION_FACTOR}ms")
        .start()
    )


def read_records(spark: SparkSession, cfg: AppConfig, *, available_now: bool = False) -> DataFrame:
    """The ingest query's committed records as a stream of typed rows (through its metadata log).

    ``available_now``: a batch takes at most the files of one ingest batch (one per shuffle partition of
    the ingest's state, as the session sets them; a checkpoint begun with another number keeps its own,
    and the batches are then a multiple or a part of an ingest batch, still bounded), so a drained
    backlog reaches the consumers in the ingest's own admission steps (``source.max_files_per_trigger``),
    not all at once: their memory and each warehouse load follow the admission, not the backlog (5 M
    events in one batch peaked at 1.34x the memory of 1 M). Long-running, the consumers follow the
    ingest batch by batch anyway and take more only to catch up.
    """
    path = records_path(cfg)
    # The metadata log's folder must exist before a reader first lists the path: a reader that finds
    # data files but no log would treat the folder as plain files, committed or not.
    resolved, fs = hadoop_path(spark, f"{path}/_spark_metadata")
    fs.mkdirs(resolved)
    reader = spark.readStream.schema(RECORD_SCHEMA)
    if available_now:
        reader = reader.option("maxFilesPerTrigger", spark.conf.get("spark.sql.shuffle.partitions"))
    return reader.parquet(path)


def _start_reader(
    frame: DataFrame,
    name: str,
    cfg: AppConfig,
    interval: timedelta | None,
    writer: BatchWriter,
    *,
    mode: str,
    conf: Mapping[str, str] | None = None,
) -> StreamingQuery:
    """Start a reader of the records: ``frame`` through ``writer`` each batch, with settings of its own
    (``conf``) except those the config's ``spark.conf`` names, which are the operator's."""
    own = {key: value for key, value in (conf or {}).items() if key not in cfg.spark.conf}
    with session_conf(frame.sparkSession, own):
        return _writer(frame, name, cfg, interval).outputMode(mode).foreachBatch(writer).start()


def start_events(
    spark: SparkSession,
    cfg: AppConfig,
    checkpoint_id: str,
    *,
    available_now: bool = False,
    metrics: HealthMetrics | None = None,
) -> StreamingQuery:
    """records -> the lake's event log and quarantine (and its counts by reason to ``metrics``)."""
    records = read_records(spark, cfg, available_now=available_now)
    # A batch of records is a Parquet scan: each sink reading it again costs less than caching it.
    writer = BatchWriter(tuple(events_sinks(cfg, checkpoint_id, metrics)), persist=False)
    interval = None if available_now else cfg.trigger.records_interval
    return _start_reader(records, EVENTS, cfg, interval, writer, mode="append")


def start_engagement(
    spark: SparkSession,
    cfg: AppConfig,
    checkpoint_id: str,
    *,
    available_now: bool = False,
    warehouse: Callable[[], Warehouse] | None = None,
) -> StreamingQuery:
    """valid records (one per event id) -> enriched windows -> the lake's engagement table, the warehouse."""
    content = read_content_dimension(spark, cfg.dimensions)
    aggregates = read_records(spark, cfg, available_now=available_now).transform(valid_events).transform(
        lambda events: engagement_from_events(
            events,
            content,
            cfg.engagement.watermark,
            cfg.engagement.window,
            cfg.engagement.unique_viewers_lg_k,
        )
    )
    writer = BatchWriter(tuple(engagement_sinks(cfg, checkpoint_id, warehouse)), prepare=stamp)
    interval = None if available_now else cfg.trigger.records_interval
    return _start_reader(aggregates, ENGAGEMENT, cfg, interval, writer, mode="update")


def start_viewers(
    spark: SparkSession,
    cfg: AppConfig,
    checkpoint_id: str,
    *,
    available_now: bool = False,
    warehouse: Callable[[], Warehouse] | None = None,
) -> StreamingQuery:
    """valid records -> unique viewers per UTC day at every rollup level -> the warehouse.

    A query of its own because a query has one aggregation: the day's sketches are its state, so each
    batch costs what it touches (re-reading the day's window sketches grew with every batch of the day).
    """
    rollups = (
        read_records(spark, cfg, available_now=available_now)
        .transform(valid_events)
        .withWatermark("event_time", spark_interval(cfg.engagement.watermark))
        .transform(lambda events: daily_viewers_from_events(events, cfg.engagement.unique_viewers_lg_k))
    )
    writer = BatchWriter(tuple(viewers_sinks(cfg, checkpoint_id, warehouse)))
    interval = None if available_now else cfg.trigger.viewers_interval
    return _start_reader(rollups, VIEWERS, cfg, interval, writer, mode="update", conf=VIEWERS_SESSION_CONF)
