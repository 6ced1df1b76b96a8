"""Stage 2: parse and validate raw records with Spark built-ins (VARIANT), no Python per row.

Each raw record is parsed once into a VARIANT; every field's JSON type is read off the variant, so a
number where a string belongs is ``wrong_type`` instead of being silently coerced. The output keeps one
row per non-blank record with the typed event columns and an array of reason codes: an empty array means
valid. :func:`valid_events` and :func:`quarantined` split it.
"""

from __future__ import annotations

from datetime import timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from streaming.schema import (
    EVENT_FIELDS,
    EVENT_SCHEMA,
    EVENT_TYPES,
    MAX_ID_LENGTH,
    PLATFORMS,
    QUARANTINE_SCHEMA,
    WATCHED_EVENT_TYPES,
)

RFC3339 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
_TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ss[.SSSSSS]XXX"
# Epoch milliseconds accepted: 0001-01-01 .. 9999-12-31, the range of a Spark timestamp.
_MIN_EPOCH_MS = -62_135_596_800_000
_MAX_EPOCH_MS = 253_402_300_799_999


def _json_type(field: str) -> Column:
    """The JSON type of a top-level field: STRING, BIGINT, DECIMAL(..), DOUBLE, BOOLEAN, OBJECT<..>, ...

    Absent fields and JSON ``null`` both give SQL NULL.
    """
    value = F.col(f"_f_{field}")
    return F.when(~F.is_variant_null(value), F.schema_of_variant(value))


def _string(field: str) -> Column:
    return F.try_variant_get(F.col(f"_f_{field}"), "$", "string")


def _reason(condition: Column, code: str) -> Column:
    return F.when(condition, F.lit(code))


def _id_reasons(name: str) -> list[Column]:
    kind, text = F.col(f"_t_{name}"), F.col(name)
    return [
        _reason(kind.isNull(), f"missing_field:{name}"),
        _reason(kind != "STRING", f"wrong_type:{name}"),
        _reason((kind == "STRING") & ~F.length(text).between(1, MAX_ID_LENGTH), f"bad_length:{name}"),
    ]


def _parse_event_time() -> tuple[Column, Column]:
    """(timestamp or null, is the encoding acceptable) from the raw event_time field."""
    kind = F.col("_t_event_time")
    text = F.col("_event_time_text")
    millis = F.col("_event_time_millis")
    # Spark timestamps hold microseconds: drop fraction digits beyond six before parsing.
    truncated = F.regexp_replace(text, r"(\.\d{6})\d+", "$1")
    from_text = F.when(text.rlike(RFC3339), F.try_to_timestamp(truncated, F.lit(_TIMESTAMP_FORMAT)))
    from_millis = F.when(millis.between(_MIN_EPOCH_MS, _MAX_EPOCH_MS), F.timestamp_millis(millis))
    parsed = F.when(kind == "STRING", from_text).when(kind == "BIGINT", from_millis)
    return parsed, parsed.isNotNull()


def parse_events(raw: DataFrame, max_future_skew: timedelta) -> DataFrame:
    """Raw records (``value, source, ingest_time``) -> typed event columns plus ``raw`` and ``reasons``.

    Blank lines are dropped (they are not records). ``reasons`` is empty for a valid event.
    """
    skew_seconds = int(max_future_skew.total_seconds())
    # Wrapping the record in [ ] makes trailing garbage (`{...}}`, `{...} x`) a parse error, and a second
    # element (`{...}, {...}`) visible: a record must be exactly one JSON value.
    wrapped = F.try_parse_json(F.concat(F.lit("["), F.col("value"), F.lit("]")))
    single = F.variant_get(wrapped, "$[1]", "variant").isNull()
    records = raw.filter(F.length(F.trim(F.col("value"))) > 0).withColumn(
        "_v", F.when(single, F.variant_get(wrapped, "$[0]", "variant"))
    )
    # Each field's variant is extracted once; the typed columns below read only these.
    fields = records.select(
        F.col("value").alias("raw"),
        "source",
        "ingest_time",
        "_v",
        *[F.variant_get(F.col("_v"), f"$.{f.name}", "variant").alias(f"_f_{f.name}") for f in EVENT_FIELDS],
    )
    typed = fields.select(
        "raw",
        "source",
        "ingest_time",
        "_v",
        F.schema_of_variant("_v").alias("_top"),
        *[_json_type(f.name).alias(f"_t_{f.name}") for f in EVENT_FIELDS],
        *[_string(f.name).alias(f.name) for f in EVENT_FIELDS if f.kind in ("id", "enum", "string")],
        _string("event_time").alias("_event_time_text"),
        F.try_variant_get(F.col("_f_event_time"), "$", "bigint").alias("_event_time_millis"),
        F.try_variant_get(F.col("_f_watch_ms"), "$", "bigint").alias("_watch_ms"),
        F.try_variant_get(F.col("_f_schema_version"), "$", "bigint").alias("_schema_version"),
    )

    event_time, event_time_ok = _parse_event_time()
    platform = F.lower(F.col("platform"))
    watched = F.col("event_type").isin(*WATCHED_EVENT_TYPES)
    watch_kind = F.col("_t_watch_ms")

    field_reasons: list[Column] = []
    for f in EVENT_FIELDS:
        kind = F.col(f"_t_{f.name}")
        if f.kind == "id":
            field_reasons += _id_reasons(f.name)
        elif f.name == "event_type":
            field_reasons += [
                _reason(kind.isNull(), "missing_field:event_type"),
                _reason(kind != "STRING", "wrong_type:event_type"),
                _reason((kind == "STRING") & ~F.col("event_type").isin(*EVENT_TYPES), "unknown_event_type"),
            ]
        elif f.name == "platform":
            field_reasons += [
                _reason(kind.isNull(), "missing_field:platform"),
                _reason(kind != "STRING", "wrong_type:platform"),
                _reason((kind == "STRING") & ~platform.isin(*PLATFORMS), "unknown_platform"),
            ]
        elif f.kind == "event_time":
            # Only a JSON string or a 64-bit JSON integer can be an event time.
            textual_or_integer = kind.isin("STRING", "BIGINT")
            field_reasons += [
                _reason(kind.isNull(), "missing_field:event_time"),
                _reason(~textual_or_integer, "wrong_type:event_time"),
                _reason(textual_or_integer & ~event_time_ok, "bad_event_time"),
                _reason(
                    event_time > F.current_timestamp() + F.make_dt_interval(secs=F.lit(skew_seconds)),
                    "event_time_in_future",
                ),
            ]
        elif f.kind == "watch_ms":
            field_reasons.append(
                _reason(
                    watched & (watch_kind.isNull() | (watch_kind != "BIGINT") | (F.col("_watch_ms") < 0)),
                    "bad_watch_ms",
                )
            )
        elif f.kind == "string":
            field_reasons.append(_reason(kind.isNotNull() & (kind != "STRING"), f"wrong_type:{f.name}"))
        elif f.kind == "integer":
            field_reasons.append(
                _reason(
                    kind.isNotNull() & ((kind != "BIGINT") | F.col(f"_{f.name}").isNull()),
                    f"wrong_type:{f.name}",
                )
            )

    is_object = F.col("_top").startswith("OBJECT")
    reasons = (
        F.when(F.col("_v").isNull(), F.array(F.lit("malformed_json")))
        .when(~is_object, F.array(F.lit("not_an_object")))
        .otherwise(F.filter(F.array(*field_reasons), lambda r: r.isNotNull()))
    )
    return typed.select(
        "event_id",
        "event_type",
        event_time.alias("event_time"),
        "content_id",
        "affiliate_id",
        platform.alias("platform"),
        "user_id",
        F.when(watched, F.col("_watch_ms")).alias("watch_ms"),
        "session_id",
        "placement",
        "country",
        "app_version",
        F.coalesce(F.col("_schema_version"), F.lit(1)).alias("schema_version"),
        "source",
        "ingest_time",
        "raw",
        reasons.alias("reasons"),
    )


def valid_events(parsed: DataFrame) -> DataFrame:
    """The valid rows of :func:`parse_events`, in the stored event schema."""
    return parsed.filter(F.size("reasons") == 0).select(*EVENT_SCHEMA.fieldNames())


def quarantined(parsed: DataFrame) -> DataFrame:
    """The invalid rows of :func:`parse_events`: raw text, reason codes, source and ingestion time."""
    return parsed.filter(F.size("reasons") > 0).select(*QUARANTINE_SCHEMA.fieldNames())
