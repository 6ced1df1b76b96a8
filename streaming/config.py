"""The one configuration tree of mediapulse, loaded once at the edge.

Sources of values, lowest to highest priority:
  1. the YAML file (``config/local.yaml`` by default),
  2. environment variables ``MEDIAPULSE__SECTION__KEY`` (nested with ``__``),
  3. ``--set section.key=value`` overrides from the command line.

Unknown keys and bad values fail at start with a :class:`ConfigError` naming every offending key.
No secrets live in files or in this tree: warehouse passwords come only from the environment, IAM or
Secrets Manager at connect time (see docs/redshift.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from streaming.commands import UsageError
from streaming.durations import PositiveDuration, spark_interval
from streaming.schema import EVENT_TYPES, PLATFORMS

# spark_interval lives in streaming.durations; streaming/query.py still imports it from here.
__all__ = ["WAREHOUSE_SCHEMES", "AppConfig", "ConfigError", "is_table_name", "load_config", "spark_interval"]

ENV_PREFIX = "MEDIAPULSE__"
ENV_DELIMITER = "__"

# The warehouse backends, by the scheme of ``warehouse.url`` (sinks.warehouse.open_warehouse opens them).
WAREHOUSE_SCHEMES = ("duckdb", "postgresql", "redshift")
_SQL_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,126}"
_TABLE_NAME = re.compile(rf"{_SQL_NAME}(\.{_SQL_NAME})?")


def is_table_name(name: str) -> bool:
    """Whether ``name`` is a plain SQL identifier, optionally qualified by its schema (``schema.table``)."""
    return _TABLE_NAME.fullmatch(name) is not None


class ConfigError(UsageError, ValueError):
    """A configuration file, override or environment variable is invalid."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FilesSourceConfig(_Section):
    kind: Literal["files"] = Field(
        default="files", description="where events come from: files below `source.path`, or a Kinesis stream"
    )
    path: str = Field(
        default="data/incoming",
        description="folder of newline-delimited JSON event files (plain or `.gz`, any nesting), local or "
        "`s3://`",
    )
    max_files_per_trigger: int = Field(
        default=100, ge=1, description="at most this many new files enter one micro-batch (oldest first)"
    )

    @field_validator("kind", mode="before")
    @classmethod
    def _known_kind(cls, value: Any) -> Any:
        return _known_source_kind(value)


class KinesisSourceConfig(_Section):
    kind: Literal["kinesis"] = Field(description="where events come from: a Kinesis stream")
    stream_name: str | None = Field(
        default=None, description="Kinesis stream to read (required with `source.kind: kinesis`)"
    )
    region: str | None = Field(
        default=None, description="AWS region of the stream (unset: the AWS environment's region)"
    )
    endpoint_url: str | None = Field(
        default=None,
        description="Kinesis endpoint, e.g. a local Kinesis-API server (unset: AWS's for the region)",
    )
    starting_position: Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"] = Field(
        default="TRIM_HORIZON", description="where a query without a checkpoint starts reading the stream"
    )
    starting_timestamp: str | None = Field(
        default=None,
        description="ISO 8601 time to start at with `starting_position: AT_TIMESTAMP` (no zone means UTC)",
    )
    consumer_type: Literal["polling", "efo"] = Field(
        default="polling",
        description="`polling` (GetRecords) or `efo` (enhanced fan-out, with the EMR connector only)",
    )
    consumer_name: str | None = Field(
        default=None, description="enhanced fan-out consumer name (required with `consumer_type: efo`)"
    )
    max_records_per_trigger: int = Field(
        default=100_000, ge=1, description="at most this many Kinesis records enter one micro-batch"
    )
    get_records_per_second: int = Field(
        default=5,
        ge=1,
        le=5,
        description="GetRecords calls per second on each shard, at most Kinesis's quota of 5 (shared by "
        "every polling consumer of the shard); lower it to leave room for other consumers.",
    )
    max_fetch_time: PositiveDuration = Field(
        default=timedelta(seconds=10), description="time one trigger may spend reading the stream"
    )
    max_retries: int = Field(
        default=8, ge=0, description="retries of a throttled or failed Kinesis call before the query fails"
    )
    retry_base_delay: PositiveDuration = Field(
        default=timedelta(milliseconds=200),
        description="backoff before the first retry of a Kinesis call; doubles with each retry (jittered)",
    )
    retry_max_delay: PositiveDuration = Field(
        default=timedelta(seconds=5), description="longest backoff between retries of a Kinesis call"
    )
    fail_on_data_loss: bool = Field(
        default=True,
        description="fail the query when records expired before they were read; `false` logs a warning "
        "and reads on from the oldest record left",
    )
    implementation: Literal["auto", "connector", "python"] = Field(
        default="auto",
        description="what reads the stream: the awslabs JVM `connector`, the boto3 `python` source, or "
        "`auto` (the connector when its jar is on the classpath); see docs/kinesis.md",
    )

    @field_validator("kind", mode="before")
    @classmethod
    def _known_kind(cls, value: Any) -> Any:
        return _known_source_kind(value)

    @model_validator(mode="after")
    def _kinesis_needs_stream(self) -> KinesisSourceConfig:
        if not self.stream_name:
            raise ValueError("source.stream_name is required when source.kind is 'kinesis'")
        if self.starting_position == "AT_TIMESTAMP" and not self.starting_timestamp:
            raise ValueError("source.starting_timestamp is required with starting_position AT_TIMESTAMP")
        return self


# The source section, by its `kind`: each kind has its own keys and no other's.
SOURCE_KINDS: dict[str, type[_Section]] = {"files": FilesSourceConfig, "kinesis": KinesisSourceConfig}


def _known_source_kind(value: Any) -> Any:
    if value not in SOURCE_KINDS:
        raise ValueError(f"Input should be {' or '.join(repr(kind) for kind in SOURCE_KINDS)}")
    return value


def _source_kind(section: Any) -> str:
    """The variant a source section is validated as; an unknown kind is refused by the default one."""
    kind = section.get("kind", "files") if isinstance(section, Mapping) else getattr(section, "kind", None)
    return kind if kind in SOURCE_KINDS else "files"


SourceConfig = Annotated[
    Annotated[FilesSourceConfig, Tag("files")] | Annotated[KinesisSourceConfig, Tag("kinesis")],
    Discriminator(_source_kind),
]


class ValidationConfig(_Section):
    max_future_skew: PositiveDuration = Field(
        default=timedelta(hours=1),
        description="events whose `event_time` is further ahead of their arrival (ingest time) are "
        "quarantined",
    )
    event_types: tuple[str, ...] = Field(
        default=EVENT_TYPES,
        min_length=1,
        description="the `event_type` values the contract accepts (any other is `unknown_event_type`); "
        "only the default ones are counted in the windows",
    )
    platforms: tuple[str, ...] = Field(
        default=PLATFORMS,
        min_length=1,
        description="the `platform` values the contract accepts, in any case (any other is "
        "`unknown_platform`)",
    )

    @field_validator("event_types", "platforms")
    @classmethod
    def _distinct(cls, values: tuple[str, ...], info: Any) -> tuple[str, ...]:
        if info.field_name == "platforms":
            values = tuple(v.lower() for v in values)  # compared case-insensitively, stored lower-case
        if any(not v.strip() for v in values) or len(set(values)) != len(values):
            raise ValueError("values must be non-blank and distinct")
        return values


class DedupConfig(_Section):
    retention: PositiveDuration = Field(
        default=timedelta(hours=1),
        description=(
            "how long (in arrival time) an `event_id` is remembered, so a re-sent event is dropped; "
            "at least `engagement.watermark`"
        ),
    )


class DimensionsConfig(_Section):
    content_path: str = Field(
        default="data/dimensions/content.csv",
        description="content dimension: a CSV (with header) or Parquet file or folder, local or `s3://`",
    )
    format: Literal["auto", "csv", "parquet"] = Field(
        default="auto", description="file format of the content dimension; `auto` goes by the file name"
    )
    refresh_interval: PositiveDuration = Field(
        default=timedelta(minutes=5), description="changed dimension files are picked up within this bound"
    )


class EngagementConfig(_Section):
    window: PositiveDuration = Field(default=timedelta(minutes=5), description="tumbling window length")
    watermark: PositiveDuration = Field(
        default=timedelta(minutes=10),
        description="lateness accepted before a window closes; later events are counted, windows unchanged",
    )
    unique_viewers_lg_k: int = Field(
        default=14,
        ge=10,
        le=21,
        description="HLL sketch size for unique viewers: 2^lg_k buckets; 14 gives ~0.8 % relative "
        "standard error",
    )


class LakeConfig(_Section):
    path: str = Field(
        default="data/lake",
        description="Parquet lake root: event log, quarantine, engagement (`s3://…` on EMR)",
    )


class WarehouseConfig(_Section):
    url: str = Field(
        default="duckdb:///data/warehouse.duckdb",
        description="`duckdb:///file`, `postgresql://user@host/db` or `redshift://…`; never a password "
        "(see docs/redshift.md)",
    )
    table: str = Field(
        default="content_engagement", description="table of the windowed numbers (`schema.table` allowed)"
    )
    ledger_table: str = Field(
        default="mediapulse_batches",
        description="ledger of applied batches, written in the same transaction as each load",
    )
    staging_path: str | None = Field(
        default=None,
        description="where a batch is staged as Parquet before its warehouse load (unset: "
        "`<lake.path>/_staging`)",
    )
    max_outage: PositiveDuration = Field(
        default=timedelta(minutes=30),
        description="how long a batch load keeps retrying an unreachable PostgreSQL or Redshift warehouse "
        "(backoff up to the URL's `retry_max_ms`, one warning per attempt) while the stream waits; "
        "then the app stops with an error",
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = value.split(":", 1)[0]
        if scheme not in WAREHOUSE_SCHEMES:
            raise ValueError(f"unsupported warehouse url scheme {scheme!r} ({', '.join(WAREHOUSE_SCHEMES)})")
        return value

    @field_validator("table", "ledger_table")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not is_table_name(value):
            raise ValueError(f"not a valid SQL identifier: {value!r}")
        return value


class CheckpointConfig(_Section):
    path: str = Field(
        default="data/checkpoints", description="Spark checkpoints (offsets and state), one folder per query"
    )
    records_retention: PositiveDuration = Field(
        default=timedelta(hours=1),
        description="validated records (`<checkpoint>/records/`) are deleted once every reader "
        "committed them and they are older than this",
    )


class TriggerConfig(_Section):
    interval: PositiveDuration = Field(
        default=timedelta(seconds=10),
        description="micro-batch interval when long-running (`run --available-now` ignores it)",
    )
    records_interval: PositiveDuration = Field(
        default=timedelta(seconds=1),
        description="how often the event-log and engagement queries look for records newly validated by "
        "the ingest query: a record waits at most one source trigger plus this before it is aggregated",
    )
    # 30 s, measured long-running at 3,000 records/s (2 runs each): at 1 min the ingest batch that ran beside
    # the viewers batch overran the 10 s trigger (p95 11.1-11.4 s); at 30 s it kept up (8.4-9.9 s).
    viewers_interval: PositiveDuration = Field(
        default=timedelta(seconds=30),
        description="how often the viewers query brings the daily unique viewers up to date: a daily "
        "figure, so a longer interval than the windows' spares the query's fixed cost per batch",
    )


class RunConfig(_Section):
    stop_marker: str | None = Field(
        default=None,
        description="when an object exists at this path (local or `s3://`), the app stops after the current "
        "micro-batch",
    )
    stop_poll_interval: PositiveDuration = Field(
        default=timedelta(seconds=5), description="how often the stop marker is looked for"
    )
    stop_timeout: PositiveDuration = Field(
        default=timedelta(minutes=10), description="longest wait for an in-flight micro-batch when stopping"
    )
    max_restarts_per_hour: int = Field(
        default=5,
        ge=0,
        description="a failed query is restarted from its checkpoint at most this many times in any hour; "
        "one more failure ends the app with a non-zero exit",
    )
    restart_backoff: PositiveDuration = Field(
        default=timedelta(seconds=10),
        description="wait before the first restart of a failed query; doubled for each further restart "
        "within the hour, up to 5 min",
    )


class MetricsConfig(_Section):
    path: str | None = Field(
        default="data/metrics/pipeline.jsonl",
        description="local JSON-lines file each micro-batch's health figures are appended to (unset: none); "
        "see docs/operations.md",
    )
    cloudwatch_namespace: str | None = Field(
        default=None,
        description="CloudWatch namespace the figures are also put into with `PutMetricData` (unset: no "
        "CloudWatch)",
    )
    cloudwatch_dimensions: dict[str, str] = Field(
        default_factory=dict,
        description="dimensions of every CloudWatch metric (`name: value`), besides `Query` (and `Reason` "
        "for quarantine counts)",
    )
    region: str | None = Field(
        default=None, description="AWS region of CloudWatch (unset: the AWS environment's region)"
    )
    endpoint_url: str | None = Field(
        default=None, description="CloudWatch endpoint, e.g. a local test server (unset: AWS's)"
    )

    @field_validator("path")
    @classmethod
    def _local(cls, value: str | None) -> str | None:
        if value and "://" in value:
            raise ValueError("metrics.path is a local file (CloudWatch is the remote destination)")
        return value or None


class SparkConfig(_Section):
    master: str | None = Field(
        default="local[2]", description="Spark master (unset on a cluster, where spark-submit sets it)"
    )
    shuffle_partitions: int = Field(
        default=4, ge=1, description="`spark.sql.shuffle.partitions`: partitions of the windowed state"
    )
    state_store_memory_mb: int | None = Field(
        default=256,
        ge=16,
        description="memory (MB) that all RocksDB state stores of one executor share for write buffers and "
        "block cache (off the JVM heap); unset: each store takes RocksDB's own, unbounded",
    )
    log_level: Literal["ERROR", "WARN", "INFO"] = Field(default="ERROR", description="Spark's own log level")
    conf: dict[str, str] = Field(
        default_factory=dict, description="more Spark settings (`key: value`), applied after mediapulse's own"
    )


class AppConfig(_Section):
    app_name: str = Field(default="mediapulse", description="Spark application name")
    source: SourceConfig = FilesSourceConfig()
    validation: ValidationConfig = ValidationConfig()
    dedup: DedupConfig = DedupConfig()
    dimensions: DimensionsConfig = DimensionsConfig()
    engagement: EngagementConfig = EngagementConfig()
    lake: LakeConfig = LakeConfig()
    warehouse: WarehouseConfig = WarehouseConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    trigger: TriggerConfig = TriggerConfig()
    run: RunConfig = RunConfig()
    metrics: MetricsConfig = MetricsConfig()
    spark: SparkConfig = SparkConfig()
    # The EMR deployment belongs to bootstrap/: the app keeps the section as written and `mediapulse emr`
    # validates it (bootstrap.settings.emr_settings), so the app's config does not depend on the deployer.
    emr: dict[str, Any] | None = Field(
        default=None,
        description="Amazon EMR deployment, validated and read by `mediapulse emr …` (docs/deploy-emr.md)",
    )

    @model_validator(mode="after")
    def _retries_outlive_the_watermark(self) -> AppConfig:
        # Only the ingest remembers event ids: a re-sent event must still be remembered while its window
        # can change (docs/architecture.md, "Event ids are remembered once").
        if self.dedup.retention < self.engagement.watermark:
            retention = spark_interval(self.dedup.retention)
            watermark = spark_interval(self.engagement.watermark)
            raise ValueError(
                f"dedup.retention ({retention}) must be at least engagement.watermark ({watermark}): "
                "a re-sent event inside the watermark would be counted twice"
            )
        return self

    @property
    def staging_path(self) -> str:
        return self.warehouse.staging_path or f"{self.lake.path.rstrip('/')}/_staging"


def default_config_path() -> Path:
    """``config/local.yaml`` of a source checkout, else the copy packaged in the wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "config" / "local.yaml", here / "_packaged" / "config" / "local.yaml"):
        if candidate.is_file():
            return candidate
    raise ConfigError("no default config found (config/local.yaml is missing from this installation)")


def _set_path(tree: dict[str, Any], dotted: str, value: Any, origin: str) -> None:
    parts = [p for p in dotted.split(".") if p]
    if not parts:
        raise ConfigError(f"{origin}: empty key")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: {'.'.join(parts)}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def _scalar(text: str) -> Any:
    """Parse an override value with YAML scalar rules (``true``, ``5``, ``[a, b]``), strings stay strings."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """``(variable name, dotted key, value)`` of each ``MEDIAPULSE__…`` variable."""
    found = []
    for name, value in sorted(environ.items()):
        if name.upper().startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            dotted = name[len(ENV_PREFIX) :].lower().replace(ENV_DELIMITER, ".")
            found.append((name, dotted, value))
    return found


def _origin(loc: tuple[str, ...], origins: Mapping[tuple[str, ...], str], file: Path) -> str:
    """Where the value at ``loc`` came from: the override that set it (or a key below it), else the file."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in origins:
            return origins[loc[:end]]
    below = sorted({origin for key, origin in origins.items() if key[: len(loc)] == loc})
    return ", ".join(below) if below else f"config file {file}"


def _note(origins: dict[tuple[str, ...], str], dotted: str, origin: str) -> None:
    """Record who set ``dotted`` last, keeping ``origins`` in the order keys were last set."""
    key = tuple(p for p in dotted.split(".") if p)
    origins.pop(key, None)
    origins[key] = origin


def _drop_other_kinds_keys(raw: dict[str, Any], origins: Mapping[tuple[str, ...], str]) -> None:
    """When an override switches ``source.kind``, the other kind's keys set before the switch no longer
    apply: ``--set source.kind=kinesis`` over a file that reads files drops the file's ``source.path``.
    Keys set after the switch stay and are checked. ``origins`` is in the order the keys were last set."""
    section = raw.get("source")
    if ("source", "kind") not in origins or not isinstance(section, dict):
        return
    model = SOURCE_KINDS.get(section.get("kind"))
    if model is None:
        return
    order = list(origins)
    switched = order.index(("source", "kind"))
    others = {key for kind in SOURCE_KINDS.values() for key in kind.model_fields} - set(model.model_fields)
    for key in [key for key in section if key in others]:
        if ("source", key) not in origins or order.index(("source", key)) < switched:
            del section[key]


def _without_tag(loc: tuple[str, ...]) -> tuple[str, ...]:
    """``source.kinesis.stream_name`` -> ``source.stream_name``: the kind is the section's, not a key."""
    if len(loc) >= 2 and loc[0] == "source" and loc[1] in SOURCE_KINDS:
        return loc[:1] + loc[2:]
    return loc


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> AppConfig:
    """Load, merge and validate the configuration. Raises :class:`ConfigError` naming each bad key."""
    file = Path(path) if path else default_config_path()
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {file}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {file} is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {file} must hold a mapping of sections, not {type(raw).__name__}")

    origins: dict[tuple[str, ...], str] = {}  # dotted key -> the variable or flag that set it
    for name, dotted, value in _env_overrides(os.environ if environ is None else environ):
        origin = f"environment variable {name}"
        _set_path(raw, dotted, _scalar(value), origin)
        _note(origins, dotted, origin)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value")
        origin = f"--set {key.strip()}"
        _set_path(raw, key.strip(), _scalar(value), origin)
        _note(origins, key.strip(), origin)

    _drop_other_kinds_keys(raw, origins)
    try:
        return AppConfig.model_validate(raw)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = _without_tag(tuple(str(p) for p in err["loc"]))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            problems.append(f"  {'.'.join(loc) or '(top level)'}: {msg} (from {_origin(loc, origins, file)})")
        raise ConfigError("invalid configuration:\n" + "\n".join(problems)) from e
