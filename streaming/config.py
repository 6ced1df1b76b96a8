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
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bootstrap.settings import EmrConfig
from streaming.durations import PositiveDuration, spark_interval

__all__ = ["AppConfig", "ConfigError", "load_config", "spark_interval"]

ENV_PREFIX = "MEDIAPULSE__"
ENV_DELIMITER = "__"


class ConfigError(ValueError):
    """A configuration file, override or environment variable is invalid."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceConfig(_Section):
    kind: Literal["files", "kinesis"] = "files"
    path: str = "data/incoming"
    max_files_per_trigger: int = Field(default=100, ge=1)
    # Kinesis (issue: consume Kinesis directly). Ignored for kind=files.
    stream_name: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    starting_position: Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"] = "TRIM_HORIZON"
    starting_timestamp: str | None = None
    consumer_type: Literal["polling", "efo"] = "polling"
    consumer_name: str | None = None
    max_records_per_trigger: int = Field(default=100_000, ge=1)
    get_records_per_second: int = Field(
        default=5,
        ge=1,
        le=5,
        description="GetRecords calls per second on each shard, at most Kinesis's quota of 5 (shared by "
        "every polling consumer of the shard); lower it to leave room for other consumers.",
    )
    max_fetch_time: PositiveDuration = timedelta(seconds=10)
    max_retries: int = Field(default=8, ge=0)
    retry_base_delay: PositiveDuration = timedelta(milliseconds=200)
    retry_max_delay: PositiveDuration = timedelta(seconds=5)
    fail_on_data_loss: bool = True
    implementation: Literal["auto", "connector", "python"] = "auto"

    @model_validator(mode="after")
    def _kinesis_needs_stream(self) -> SourceConfig:
        if self.kind == "kinesis" and not self.stream_name:
            raise ValueError("source.stream_name is required when source.kind is 'kinesis'")
        if self.starting_position == "AT_TIMESTAMP" and not self.starting_timestamp:
            raise ValueError("source.starting_timestamp is required with starting_position AT_TIMESTAMP")
        return self


class ValidationConfig(_Section):
    max_future_skew: PositiveDuration = timedelta(hours=1)


class DedupConfig(_Section):
    # How long (in arrival time) an event_id is remembered for the lake's event log.
    retention: PositiveDuration = timedelta(hours=1)


class DimensionsConfig(_Section):
    content_path: str = "data/dimensions/content.csv"
    format: Literal["auto", "csv", "parquet"] = "auto"
    refresh_interval: PositiveDuration = timedelta(minutes=5)


class EngagementConfig(_Section):
    window: PositiveDuration = timedelta(minutes=5)
    watermark: PositiveDuration = timedelta(minutes=10)
    # HLL sketch size for unique viewers: 2**lg_k buckets; 14 gives ~0.8 % relative standard error.
    unique_viewers_lg_k: int = Field(default=14, ge=10, le=21)


class LakeConfig(_Section):
    path: str = "data/lake"


class WarehouseConfig(_Section):
    url: str = "duckdb:///data/warehouse.duckdb"
    table: str = "content_engagement"
    ledger_table: str = "mediapulse_batches"
    staging_path: str | None = None  # default: <lake>/_staging

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = value.split(":", 1)[0]
        if scheme not in {"duckdb", "postgresql", "redshift"}:
            raise ValueError(f"unsupported warehouse url scheme {scheme!r} (duckdb, postgresql, redshift)")
        return value

    @field_validator("table", "ledger_table")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,126}(\.[A-Za-z_][A-Za-z0-9_]{0,126})?", value):
            raise ValueError(f"not a valid SQL identifier: {value!r}")
        return value


class CheckpointConfig(_Section):
    path: str = "data/checkpoints"


class TriggerConfig(_Section):
    interval: PositiveDuration = timedelta(seconds=10)


class RunConfig(_Section):
    # When an object exists at this path (local or s3://), the app stops after the current micro-batch.
    stop_marker: str | None = None
    stop_poll_interval: PositiveDuration = timedelta(seconds=5)
    # Upper bound on waiting for an in-flight micro-batch when stopping.
    stop_timeout: PositiveDuration = timedelta(minutes=10)


class SparkConfig(_Section):
    master: str | None = "local[2]"
    shuffle_partitions: int = Field(default=4, ge=1)
    log_level: Literal["ERROR", "WARN", "INFO"] = "ERROR"
    conf: dict[str, str] = Field(default_factory=dict)


class AppConfig(_Section):
    app_name: str = "mediapulse"
    source: SourceConfig = SourceConfig()
    validation: ValidationConfig = ValidationConfig()
    dedup: DedupConfig = DedupConfig()
    dimensions: DimensionsConfig = DimensionsConfig()
    engagement: EngagementConfig = EngagementConfig()
    lake: LakeConfig = LakeConfig()
    warehouse: WarehouseConfig = WarehouseConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    trigger: TriggerConfig = TriggerConfig()
    run: RunConfig = RunConfig()
    spark: SparkConfig = SparkConfig()
    emr: EmrConfig | None = None

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


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    found = []
    for name, value in sorted(environ.items()):
        if name.upper().startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            dotted = name[len(ENV_PREFIX) :].lower().replace(ENV_DELIMITER, ".")
            found.append((dotted, value))
    return found


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

    for dotted, value in _env_overrides(os.environ if environ is None else environ):
        _set_path(raw, dotted, _scalar(value), f"environment {ENV_PREFIX}{dotted.upper().replace('.', '__')}")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value")
        _set_path(raw, key.strip(), _scalar(value), f"--set {key.strip()}")

    try:
        return AppConfig.model_validate(raw)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"  {key}: {msg}")
        raise ConfigError(f"invalid configuration ({file}):\n" + "\n".join(problems)) from e
