"""The event contract: the single definition from which the Spark schemas and docs/events.md derive."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pyspark.sql import types as T

EVENT_TYPES: tuple[str, ...] = ("impression", "click", "play_start", "progress", "complete")
PLATFORMS: tuple[str, ...] = ("web", "ios", "android", "tv")
WATCHED_EVENT_TYPES: tuple[str, ...] = ("progress", "complete")
MAX_ID_LENGTH = 128

Kind = Literal["id", "enum", "event_time", "watch_ms", "string", "integer"]


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    required: bool
    type_doc: str
    rule: str
    choices: tuple[str, ...] = ()


EVENT_FIELDS: tuple[Field, ...] = (
    Field(
        "event_id",
        "id",
        True,
        f"string, 1-{MAX_ID_LENGTH} chars",
        "client-generated; the same id seen again is a duplicate",
    ),
    Field(
        "event_type",
        "enum",
        True,
        ", ".join(f"`{t}`" for t in EVENT_TYPES),
        "anything else is invalid (`unknown_event_type`)",
        EVENT_TYPES,
    ),
    Field(
        "event_time",
        "event_time",
        True,
        "RFC 3339 string (`Z` or offset, optional fraction) or integer epoch milliseconds",
        "stored as UTC timestamp; unparseable is invalid (`bad_event_time`); more than "
        "`validation.max_future_skew` ahead of processing time is invalid (`event_time_in_future`)",
    ),
    Field("content_id", "id", True, f"string, 1-{MAX_ID_LENGTH} chars", "joined with the content dimension"),
    Field("affiliate_id", "id", True, f"string, 1-{MAX_ID_LENGTH} chars", ""),
    Field(
        "platform",
        "enum",
        True,
        ", ".join(f"`{p}`" for p in PLATFORMS),
        "case-insensitive, stored lower-case; anything else is invalid (`unknown_platform`)",
        PLATFORMS,
    ),
    Field("user_id", "id", True, f"string, 1-{MAX_ID_LENGTH} chars", "pseudonymous viewer id"),
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
    Field("placement", "string", False, "string", ""),
    Field("country", "string", False, "string", ""),
    Field("app_version", "string", False, "string", ""),
    Field("schema_version", "integer", False, "integer", "default 1"),
)

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS)

# Reason codes of quarantined records. `<name>` is a field name.
REASON_CODES: dict[str, str] = {
    "malformed_json": "the record is not valid JSON",
    "not_an_object": "the record is JSON but not an object",
    "missing_field:<name>": "a required field is absent or null",
    "wrong_type:<name>": "a field has the wrong JSON type",
    "bad_length:<name>": f"a string id is empty or longer than {MAX_ID_LENGTH} characters",
    "unknown_event_type": f"event_type is not one of {', '.join(EVENT_TYPES)}",
    "unknown_platform": f"platform is not one of {', '.join(PLATFORMS)} (any case)",
    "bad_event_time": "event_time is neither an RFC 3339 string nor an integer of epoch milliseconds",
    "event_time_in_future": "event_time is more than max_future_skew ahead of processing time",
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

# The content dimension (CSV or Parquet), read with this schema, never inferred.
CONTENT_DIM_SCHEMA = T.StructType(
    [
        T.StructField("content_id", T.StringType(), False),
        T.StructField("title", T.StringType(), True),
        T.StructField("category", T.StringType(), True),
        T.StructField("content_type", T.StringType(), True),
        T.StructField("duration_s", T.IntegerType(), True),
        T.StructField("publisher", T.StringType(), True),
        T.StructField("published_at", T.TimestampType(), True),
    ]
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
    lines += [
        "",
        "## Stored forms",
        "",
        "Valid events land in `<lake>/events/event_date=…/event_hour=…/` with this schema:",
        "",
        "| column | Spark type |",
        "|---|---|",
    ]
    lines += [f"| `{s.name}` | `{s.dataType.simpleString()}` |" for s in EVENT_SCHEMA.fields]
    lines += [
        "",
        "Quarantined records land in `<lake>/quarantine/ingest_date=…/` with this schema:",
        "",
        "| column | Spark type |",
        "|---|---|",
    ]
    lines += [f"| `{s.name}` | `{s.dataType.simpleString()}` |" for s in QUARANTINE_SCHEMA.fields]
    return "\n".join(lines) + "\n"
