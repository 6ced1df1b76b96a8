"""The event contract: the single definition from which the Spark schemas and docs/events.md derive."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from pyspark.sql import types as T

EVENT_TYPES: tuple[str, ...] = ("impression", "click", "play_start", "progress", "complete")
PLATFORMS: tuple[str, ...] = ("web", "ios", "android", "tv")
WATCHED_EVENT_TYPES: tuple[str, ...] = ("progress", "complete")
# Redshift VARCHAR widths count UTF-8 bytes; so does the contract.
MAX_ID_BYTES = 128
_ID_TYPE = f"string, 1-{MAX_ID_BYTES} bytes in UTF-8"
# The placement key of an event without one (absent, null or empty): its own value, so a key is never null.
NO_PLACEMENT = "(none)"
# A rolled-up key column of a daily rollup: "all values" (e.g. the row of a content over every affiliate).
ALL = "(all)"

Kind = Literal["id", "enum", "event_time", "watch_ms", "string", "integer"]


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    required: bool
    type_doc: str
    rule: str
    choices: tuple[str, ...] = ()
    lower_case: bool = False  # an enum compared case-insensitively and stored lower-case
    default: int | None = None  # stored when the field is absent or null


EVENT_FIELDS: tuple[Field, ...] = (
    Field(
        "event_id",
        "id",
        True,
        _ID_TYPE,
        "client-generated; the same id seen again is a duplicate",
    ),
    Field(
        "event_type",
        "enum",
        True,
        ", ".join(f"`{t}`" for t in EVENT_TYPES),
        "the list is `validation.event_types` (these by default); anything else is invalid "
        "(`unknown_event_type`)",
        EVENT_TYPES,
    ),
    Field(
        "event_time",
        "event_time",
        True,
        "RFC 3339 string (`Z` or offset, optional fraction) or integer epoch milliseconds",
        "stored as UTC timestamp; unparseable is invalid (`bad_event_time`); more than "
        "`validation.max_future_skew` ahead of the record's arrival (its ingest time) is invalid "
        "(`event_time_in_future`)",
    ),
    Field("content_id", "id", True, _ID_TYPE, "joined with the content dimension"),
    Field("affiliate_id", "id", True, _ID_TYPE, ""),
    Field(
        "platform",
        "enum",
        True,
        ", ".join(f"`{p}`" for p in PLATFORMS),
        "the list is `validation.platforms` (these by default); case-insensitive, stored lower-case; "
        "anything else is invalid (`unknown_platform`)",
        PLATFORMS,
        lower_case=True,
    ),
    Field("user_id", "id", True, _ID_TYPE, "pseudonymous viewer id"),
    Field(
        "watch_ms",
        "watch_ms",
        True,
        "integer ≥ 0",
        "required for `progress`/`complete`, ignored (stored null) otherwise; milliseconds watched since "
        "the previous progress event; negative, non-integer or missing when required is invalid "
        "(`bad_watch_ms`)",
    ),
    Field("session_id", "string", False, "string", ""),
    Field(
        "placement",
        "string",
        False,
        "string",
        f"the slot that showed the content (`home_hero`, `sidebar`, …); absent, null or empty is keyed "
        f"as `{NO_PLACEMENT}` in the aggregates",
    ),
    Field("country", "string", False, "string", ""),
    Field("app_version", "string", False, "string", ""),
    Field("schema_version", "integer", False, "integer", "default 1", default=1),
)

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS)

# A quarantined record that `mediapulse quarantine replay` sends through the pipeline again is written to
# a file under `<source.path>/REPLAY_FOLDER/` with its original source and ingestion time in REPLAY_FIELD;
# the parser takes that reference from records of such files only (streaming.parse, streaming.replay).
REPLAY_FOLDER = "mediapulse-replay"
REPLAY_FIELD = "_mediapulse_replay"

# Reason codes of quarantined records. `<name>` is a field name.
REASON_CODES: dict[str, str] = {
    "malformed_json": "the record is not valid JSON",
    "not_an_object": "the record is JSON but not an object",
    "missing_field:<name>": "a required field is absent or null",
    "wrong_type:<name>": "a field has the wrong JSON type",
    "bad_length:<name>": f"a string id is empty or longer than {MAX_ID_BYTES} bytes in UTF-8",
    "unknown_event_type": "event_type is not one of `validation.event_types`",
    "unknown_platform": "platform is not one of `validation.platforms` (any case)",
    "bad_event_time": "event_time is neither an RFC 3339 string nor an integer of epoch milliseconds",
    "event_time_in_future": (
        "event_time is more than max_future_skew ahead of the record's arrival (ingest time)"
    ),
    "bad_watch_ms": "watch_ms is missing, negative or not an integer on a progress/complete event",
}

# The raw frame every source produces, before parsing.
RAW_SCHEMA = T.StructType(
    [
        T.StructField("value", T.StringType(), True),
        T.StructField("source", T.StringType(), False),
        T.StructField("ingest_time", T.TimestampType(), False),
    ]
)

_SPARK_TYPES: dict[Kind, T.DataType] = {
    "id": T.StringType(),
    "enum": T.StringType(),
    "event_time": T.TimestampType(),
    "watch_ms": T.LongType(),
    "string": T.StringType(),
    "integer": T.LongType(),
}

# A validated event, as stored in <lake>/events/.
EVENT_SCHEMA = T.StructType(
    [
        *(
            T.StructField(f.name, _SPARK_TYPES[f.kind], not f.required or f.kind == "watch_ms")
            for f in EVENT_FIELDS
        ),
        T.StructField("source", T.StringType(), False),
        T.StructField("ingest_time", T.TimestampType(), False),
    ]
)

# A quarantined record, as stored in <lake>/quarantine/.
QUARANTINE_SCHEMA = T.StructType(
    [
        T.StructField("raw", T.StringType(), True),
        T.StructField("reasons", T.ArrayType(T.StringType(), False), False),
        T.StructField("source", T.StringType(), False),
        T.StructField("ingest_time", T.TimestampType(), False),
    ]
)

# The columns the lake sink adds after a table's own partition columns (sinks.lake.LakeSink): the checkpoint
# that numbered the batch and the batch id.
_LAKE_BATCH_COLUMNS = (
    T.StructField("checkpoint_id", T.StringType(), True),
    T.StructField("batch_id", T.LongType(), True),
)

# The event log and the quarantine as the lake holds them (read back by the backfill and the replay): the
# table's columns, then its partition columns.
EVENT_LOG_SCHEMA = T.StructType(
    [
        *EVENT_SCHEMA.fields,
        T.StructField("event_date", T.DateType(), True),
        T.StructField("event_hour", T.IntegerType(), True),
        *_LAKE_BATCH_COLUMNS,
    ]
)
QUARANTINE_LOG_SCHEMA = T.StructType(
    [*QUARANTINE_SCHEMA.fields, T.StructField("ingest_date", T.DateType(), True), *_LAKE_BATCH_COLUMNS]
)

# A validated record, as the one reader of the source hands it to the event-log and engagement queries
# (Spark's file sink under <checkpoint>/records/): the event columns (null where a record is invalid),
# the raw text (kept for invalid records only) and the reason codes (empty for a valid event).
RECORD_SCHEMA = T.StructType(
    [
        *(T.StructField(f.name, f.dataType, True) for f in EVENT_SCHEMA.fields),
        T.StructField("raw", T.StringType(), True),
        T.StructField("reasons", T.ArrayType(T.StringType(), False), True),
    ]
)

# The replay ledger, <lake>/quarantine_replays/replay_id=…/: one row per quarantined record that
# `mediapulse quarantine replay` sent through the pipeline again. The first five columns name the
# quarantine row (its batch folder, source, ingestion time and the SHA-256 of its raw text); the raw text
# is kept so an interrupted replay can be finished from the ledger alone.
REPLAYED_SCHEMA = T.StructType(
    [
        T.StructField("checkpoint_id", T.StringType(), False),
        T.StructField("batch_id", T.LongType(), False),
        T.StructField("source", T.StringType(), False),
        T.StructField("ingest_time", T.TimestampType(), False),
        T.StructField("raw_sha256", T.StringType(), False),
        T.StructField("raw", T.StringType(), False),
        T.StructField("event_id", T.StringType(), True),
        T.StructField("reasons", T.ArrayType(T.StringType(), False), False),
        T.StructField("replayed_at", T.TimestampType(), False),
    ]
)
REPLAYED_KEY = ("checkpoint_id", "batch_id", "source", "ingest_time", "raw_sha256")

# Columns of records and the event log with about one value per event: a Parquet dictionary never pays
# off for them (it fills and falls back in every column chunk), so they are written without one.
PLAIN_ENCODED_COLUMNS = ("event_id", "user_id", "session_id", "event_time", "raw")

# ------------------------------------------------------------------------------------------ tables
# A table the pipeline reads or writes beyond the event log, defined once: its Spark and Arrow schemas, each
# warehouse dialect's DDL (sinks.warehouse.sql), the docs and the test fixtures are derived from it.

ColumnType = Literal["timestamp", "string", "bigint", "int", "double", "binary"]
# What a column is for: windows and groups key the engagement rows, attributes come from the content
# dimension, metrics (additive counts) and the sketch are aggregated, ``latest`` is the newest event time
# seen, rates derived from metrics, batch columns stamped.
Role = Literal["window", "group", "attribute", "metric", "sketch", "latest", "rate", "batch"]

_COLUMN_SPARK_TYPES: dict[ColumnType, T.DataType] = {
    "timestamp": T.TimestampType(),
    "string": T.StringType(),
    "bigint": T.LongType(),
    "int": T.IntegerType(),
    "double": T.DoubleType(),
    "binary": T.BinaryType(),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    role: Role
    doc: str
    warehouse: bool = True  # False: kept in the lake only


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # columns that are never null; one row per key in the warehouse

    def names(self, *roles: Role) -> tuple[str, ...]:
        """Column names in table order, of the given roles only when any are given."""
        return tuple(c.name for c in self.columns if not roles or c.role in roles)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def in_warehouse(self) -> Table:
        """The columns the warehouse keeps."""
        return Table(self.name, tuple(c for c in self.columns if c.warehouse), self.key)

    def spark_schema(self) -> T.StructType:
        return T.StructType(
            [T.StructField(c.name, _COLUMN_SPARK_TYPES[c.type], c.name not in self.key) for c in self.columns]
        )

    def arrow_schema(self) -> Any:
        """The Spark schema as Arrow sees it (timestamps in microseconds, UTC)."""
        from pyspark.sql.pandas.types import to_arrow_schema

        return to_arrow_schema(self.spark_schema())


# The content dimension (CSV or Parquet), read with this schema, never inferred; the warehouse's content_dim.
CONTENT_DIM = Table(
    "content_dim",
    (
        Column("content_id", "string", "group", "the content item"),
        Column("title", "string", "attribute", ""),
        Column("category", "string", "attribute", ""),
        Column("content_type", "string", "attribute", ""),
        Column("duration_s", "int", "attribute", "length in seconds"),
        Column("publisher", "string", "attribute", ""),
        Column("published_at", "timestamp", "attribute", "the newest row of a content_id wins"),
    ),
    key=("content_id",),
)
CONTENT_DIM_SCHEMA = CONTENT_DIM.spark_schema()


def _carried(name: str) -> Column:
    """A content-dimension column carried onto each engagement row by the enrichment."""
    return replace(CONTENT_DIM.column(name), doc="from the content dimension; null for unknown content")


# Engagement per window, content, affiliate, placement and platform: the lake's engagement table and,
# without the sketch, the warehouse's target table (warehouse.table). A new metric is one Column here and
# its expression in streaming.aggregate.
ENGAGEMENT = Table(
    "content_engagement",
    (
        Column("window_start", "timestamp", "window", "start of the event-time window (inclusive, UTC)"),
        Column("window_end", "timestamp", "window", "end of the window (exclusive)"),
        Column("content_id", "string", "group", "the content item"),
        Column("affiliate_id", "string", "group", "the site or app that showed it"),
        Column(
            "placement",
            "string",
            "group",
            f"the slot that showed it; `{NO_PLACEMENT}` when the event named none",
        ),
        Column("platform", "string", "group", "the event's platform, lower-case"),
        *(_carried(name) for name in ("title", "category", "content_type", "duration_s")),
        Column("impressions", "bigint", "metric", "`impression` events"),
        Column("clicks", "bigint", "metric", "`click` events"),
        Column("play_starts", "bigint", "metric", "`play_start` events"),
        Column("completions", "bigint", "metric", "`complete` events"),
        Column("watch_time_ms", "bigint", "metric", "sum of `watch_ms` of `progress` and `complete` events"),
        Column(
            "unique_viewers",
            "bigint",
            "sketch",
            "distinct `user_id`s of this row, estimated from the sketch; never add it up across rows "
            "(daily_unique_viewers holds rolled-up estimates)",
        ),
        Column(
            "viewers_sketch",
            "binary",
            "sketch",
            "HLL sketch of `user_id`: windows merge with `hll_union_agg`",
            warehouse=False,
        ),
        Column("last_event_time", "timestamp", "latest", "the newest event time seen in the row's window"),
        Column("ctr", "double", "rate", "clicks / impressions; null without impressions"),
        Column("play_rate", "double", "rate", "play_starts / impressions; null without impressions"),
        Column(
            "completion_rate",
            "double",
            "rate",
            "completions / play_starts; null without plays (a play may complete in a later window)",
        ),
        Column("updated_at", "timestamp", "batch", "when the micro-batch that last wrote the row ran"),
        Column("batch_id", "bigint", "batch", "that micro-batch's id"),
    ),
    key=("window_start", "content_id", "affiliate_id", "placement", "platform"),
)

# Unique viewers per UTC day over every combination of content, affiliate, placement and platform (a
# rolled-up column holds ALL): the `viewers` query's estimate from the day's sketch in its state (a
# backfill recomputes it from the lake's window sketches), so a row is the whole day's, never a sum.
DAILY_VIEWERS = Table(
    "daily_unique_viewers",
    (
        Column("day", "timestamp", "window", "start of the UTC day"),
        Column("content_id", "string", "group", f"the content item, or `{ALL}`"),
        Column("affiliate_id", "string", "group", f"the affiliate, or `{ALL}`"),
        Column("placement", "string", "group", f"the placement (`{NO_PLACEMENT}`: none given), or `{ALL}`"),
        Column("platform", "string", "group", f"the platform, or `{ALL}`"),
        Column("unique_viewers", "bigint", "sketch", "distinct `user_id`s of the day, from merged sketches"),
        Column("updated_at", "timestamp", "batch", "when the micro-batch that last wrote the row ran"),
        Column("batch_id", "bigint", "batch", "that micro-batch's id"),
    ),
    key=("day", "content_id", "affiliate_id", "placement", "platform"),
)


def events_markdown() -> str:
    """docs/events.md, generated from the definitions above (a test keeps the file in sync)."""
    lines = [
        "# Event contract",
        "",
        "<!-- Generated from streaming/schema.py by `mediapulse docs-events`; do not edit by hand. -->",
        "",
        "One JSON object per record: one per line in files (plain or `.gz`), one per Kinesis record.",
        "Unknown extra fields are ignored. A blank line is not a record. A JSON `null` counts as absent.",
        "Every other record is either valid or quarantined with one or more reason codes.",
        f"A record in a file under a `{REPLAY_FOLDER}/` folder (written by `mediapulse quarantine replay`)",
        f"keeps its original `source` and `ingest_time` from its `{REPLAY_FIELD}` field.",
        "",
        "| field | type | required | rule |",
        "|---|---|---|---|",
    ]
    for f in EVENT_FIELDS:
        required = "yes" if f.required else "no"
        if f.kind == "watch_ms":
            required = "for progress/complete"
        lines.append(f"| `{f.name}` | {f.type_doc} | {required} | {f.rule} |")
    lines += ["", "## Quarantine reason codes", "", "| code | meaning |", "|---|---|"]
    lines += [f"| `{code}` | {meaning} |" for code, meaning in REASON_CODES.items()]
    lines += ["", "## Stored forms"]
    lines += _stored_form(
        "Valid events land in `<lake>/events/event_date=…/event_hour=…/` with this schema:",
        ("column", "Spark type"),
        [(f"`{s.name}`", f"`{s.dataType.simpleString()}`") for s in EVENT_SCHEMA.fields],
    )
    lines += _stored_form(
        "Quarantined records land in `<lake>/quarantine/ingest_date=…/` with this schema:",
        ("column", "Spark type"),
        [(f"`{s.name}`", f"`{s.dataType.simpleString()}`") for s in QUARANTINE_SCHEMA.fields],
    )
    spark_types = {s.name: s.dataType.simpleString() for s in ENGAGEMENT.spark_schema().fields}
    lines += _stored_form(
        "Engagement windows land in `<lake>/engagement/window_date=…/` and, but for the lake-only columns,\n"
        f"in the warehouse table (`warehouse.table`, default `{ENGAGEMENT.name}`), one row per\n"
        + ", ".join(f"`{k}`" for k in ENGAGEMENT.key)
        + ":",
        ("column", "Spark type", "warehouse", "meaning"),
        [
            (f"`{c.name}`", f"`{spark_types[c.name]}`", "yes" if c.warehouse else "no", c.doc)
            for c in ENGAGEMENT.columns
        ],
    )
    lines += _stored_form(
        f"Daily unique viewers land in the warehouse table `{DAILY_VIEWERS.name}` (one row per\n"
        + ", ".join(f"`{k}`" for k in DAILY_VIEWERS.key)
        + f"; `{ALL}` in a key column means every value of it):",
        ("column", "type", "meaning"),
        [(f"`{c.name}`", f"`{c.type}`", c.doc) for c in DAILY_VIEWERS.columns],
    )
    return "\n".join(lines) + "\n"


def _stored_form(where: str, headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """A paragraph saying where a table lands, then its columns as a Markdown table."""
    return [
        "",
        where,
        "",
        f"| {' | '.join(headers)} |",
        "|" + "---|" * len(headers),
        *(f"| {' | '.join(row)} |" for row in rows),
    ]
