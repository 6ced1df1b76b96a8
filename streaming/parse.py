"""Stage 2: parse and validate raw records with Spark built-ins (VARIANT), no Python per row.

Each record is parsed once, by Spark's strict JSON parser (``try_parse_json``: a duplicate key, a single
quote, ``NaN`` or a raw control character makes the record malformed), and its contract fields are taken
out of the parsed object in one pass, each as its own VARIANT. A field's JSON type is read off its
variant, so a number where a string belongs is ``wrong_type`` instead of being silently coerced. The
checks are generated from the field kinds in :mod:`streaming.schema`.

The output keeps one row per non-blank record with the typed event columns (null where a field is
unusable) and an array of reason codes: an empty array means valid. :func:`valid_events` and
:func:`quarantined` split it.

What keeps it as cheap as a JSON parse (``tests/streaming/test_parse_plan.py`` pins the first point):

* Each step is one projection that reads the columns of the step before, and ``reasons`` leaves as the
  output of a generator. Spark (4.0) pushes a filter through projections by substituting their
  expressions, so a filter on ``reasons`` would otherwise parse every record again.
* No variant lookup misses on the common path: a VARIANT path that finds nothing costs an exception
  inside Spark. Presence is read from the fields taken out of the object, and the values of the
  document are counted with one cast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from streaming.schema import (
    EVENT_FIELDS,
    EVENT_SCHEMA,
    MAX_ID_LENGTH,
    QUARANTINE_SCHEMA,
    WATCHED_EVENT_TYPES,
    Field,
    Kind,
)

# An RFC 3339 date-time with seconds and a zone. `\z`, not `$`: a trailing newline must not pass.
RFC3339 = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:Z|[+-][0-9]{2}:[0-9]{2})\z"
)
# Event times are stored between 0001-01-01 and 9999-12-31 UTC, as epoch milliseconds:
_MIN_EPOCH_MS = -62_135_596_800_000
_MAX_EPOCH_MS = 253_402_300_799_999

# A field's string is read strictly by casting its variant to BINARY, which succeeds for a string only
# (JSON has no binary values): a number where a string belongs reads as null, not as its text.
_STRING_KINDS: frozenset[Kind] = frozenset({"id", "enum", "string"})
# What is read off each field: its string, its 64-bit integer, or (an event time) either.
_TEXT_KINDS: frozenset[Kind] = _STRING_KINDS | {"event_time"}
_INTEGER_KINDS: frozenset[Kind] = frozenset({"event_time", "watch_ms", "integer"})
# The contract fields of an object, taken out of it in one pass (SQL NULL when absent, variant null when
# JSON null).
_FIELDS = T.StructType([T.StructField(f.name, T.VariantType()) for f in EVENT_FIELDS])


def parse_events(raw: DataFrame, max_future_skew: timedelta) -> DataFrame:
    """Raw records (``value, source, ingest_time``) -> typed event columns plus ``raw`` and ``reasons``.

    Blank lines are dropped (they are not records). ``reasons`` is empty for a valid event.
    """
    # Each step is one projection; the columns it adds are computed once and read by the next step.
    value = F.col("value")
    # A record is a line holding more than whitespace, as Python's str.strip() counts it (`{` is a
    # shortcut for the usual record).
    records = raw.filter(F.startswith(value, F.lit("{")) | value.rlike(r"(?U)[^\s\x1c-\x1f]"))
    marked = records.select(
        value.alias("raw"), "source", "ingest_time", F.contains(value, F.lit("]")).alias("_may_close_early")
    )
    parsed = marked.select("*", _parse(F.col("raw"), F.col("_may_close_early")).alias("_document"))
    taken = parsed.select(
        "raw",
        "source",
        "ingest_time",
        "_may_close_early",
        _values(F.col("_document")).alias("_values"),
        # null unless the value is an object
        F.try_variant_get("_document", "$[0]", _FIELDS.simpleString()).alias("_fields"),
    )
    read = taken.select(
        "raw",
        "source",
        "ingest_time",
        _is_one_value(F.col("_values"), F.col("raw"), F.col("_may_close_early")).alias("_one_value"),
        "_fields",
        *[column for f in EVENT_FIELDS for column in _read(f)],
    )
    # An event time is interpreted once here: its checks and its column all use the instant.
    timed = read.select(
        "*", *[_instant(f).alias(f"_time_{f.name}") for f in EVENT_FIELDS if f.kind == "event_time"]
    )
    limit = F.current_timestamp() + F.make_dt_interval(secs=F.lit(int(max_future_skew.total_seconds())))
    checks = {f.name: _CHECKS[f.kind](f, _Field.of(f), limit) for f in EVENT_FIELDS}
    record_reason = F.when(~F.col("_one_value"), F.lit("malformed_json")).when(
        F.col("_fields").isNull(), F.lit("not_an_object")
    )
    checked = timed.select(
        "*",
        record_reason.alias("_record_reason"),
        *[check.reason.alias(f"_reason_{name}") for name, check in checks.items()],
    )
    field_reasons = [F.col(f"_reason_{f.name}") for f in EVENT_FIELDS]
    reasons = (
        F.when(F.col("_record_reason").isNotNull(), F.array("_record_reason"))
        .when(F.coalesce(*field_reasons).isNull(), F.array().cast(T.ArrayType(T.StringType(), False)))
        .otherwise(_codes(field_reasons))
    )
    # Spark's optimizer pushes a filter on `reasons` (valid or quarantined rows) through every projection
    # above, substituting the expressions it reads: the filter would parse each record again. `reasons`
    # therefore leaves as the output of a generator (one row per record), which filters are not pushed
    # into. The event columns are computed after it, in code Spark compiles into a method of its own.
    explained = checked.select("*", F.explode(F.array(reasons)).alias("reasons"))
    return explained.select(
        *[check.value.alias(name) for name, check in checks.items()],
        "source",
        "ingest_time",
        "raw",
        "reasons",
    )


def valid_events(parsed: DataFrame) -> DataFrame:
    """The valid rows of :func:`parse_events`, in the stored event schema."""
    return parsed.filter(F.size("reasons") == 0).select(*EVENT_SCHEMA.fieldNames())


def quarantined(parsed: DataFrame) -> DataFrame:
    """The invalid rows of :func:`parse_events`: raw text, reason codes, source and ingestion time."""
    return parsed.filter(F.size("reasons") > 0).select(*QUARANTINE_SCHEMA.fieldNames())


# --- the record -----------------------------------------------------------------------------------


def _parse(value: Column, may_close_early: Column) -> Column:
    """The record inside a JSON array, parsed as a VARIANT; null when it is not valid JSON.

    Spark's parser stops after the first complete value and ignores the rest, so the record is wrapped in
    ``[`` ``]``: trailing garbage (``{...} x``, ``{...}}``) then fails the parse, and a second value
    (``{...}, {...}``) becomes a second element. Only a record holding a ``]`` can close the wrapper
    early (``{...}] x``); such a record is followed by a copy of itself as a JSON string, which a parse
    that stopped early inside the record cannot have read (the record cannot hold a quoted copy of itself).
    """
    plain = F.concat(F.lit("["), value, F.lit("]"))
    with_copy = F.concat(F.lit("["), value, F.lit(","), F.to_json(value.cast("variant")), F.lit("]"))
    return F.try_parse_json(F.when(may_close_early, with_copy).otherwise(plain))


def _values(document: Column) -> Column:
    """The values in a document made by :func:`_parse`, each read as BINARY: the bytes of a string (the
    copy of a record holding ``]``) and null for anything else, without reading it."""
    return F.try_variant_get(document, "$", "array<binary>")


def _is_one_value(values: Column, value: Column, may_close_early: Column) -> Column:
    """Whether the record is exactly one JSON value, from the :func:`_values` of its document."""
    count = F.size(values)
    single = F.when(may_close_early, (count == 2) & values[1].cast("string").eqNullSafe(value)).otherwise(
        count == 1
    )
    return values.isNotNull() & single  # no values: not JSON at all


def _codes(reasons: list[Column]) -> Column:
    """The non-null reason codes, in field order (array_remove is compiled code, array_compact is not)."""
    return F.array_remove(F.array(*[F.coalesce(r, F.lit("")) for r in reasons]), "")


# --- the fields -----------------------------------------------------------------------------------


def _present(variant: Column) -> Column:
    return variant.isNotNull() & ~F.is_variant_null(variant)


def _read(field: Field) -> list[Column]:
    """The read-step columns of one field: its JSON string and/or its JSON integer (64-bit), else null."""
    value = F.col("_fields")[field.name]
    columns = []
    if field.kind in _TEXT_KINDS:
        text = F.try_variant_get(value, "$", "binary").cast("string")
        columns.append(text.alias(f"_text_{field.name}"))
    if field.kind in _INTEGER_KINDS:
        # The JSON integer of a field that is not a string (a string field has none).
        is_integer = F.schema_of_variant(value) == "BIGINT"
        if field.kind in _TEXT_KINDS:
            is_integer = text.isNull() & is_integer
        columns.append(
            F.when(is_integer, F.try_variant_get(value, "$", "bigint")).alias(f"_integer_{field.name}")
        )
    return columns


@dataclass(frozen=True)
class _Field:
    """One field as the check step sees it."""

    text: Column  # the value of a JSON string, else null
    integer: Column  # the value of a JSON integer (64-bit), else null
    present: Column  # neither absent nor JSON null
    time: Column  # the instant an event time denotes, else null

    @staticmethod
    def of(field: Field) -> _Field:
        def column(part: str, kinds: frozenset[Kind]) -> Column:
            return F.col(f"_{part}_{field.name}") if field.kind in kinds else F.lit(None)

        text, integer = column("text", _TEXT_KINDS), column("integer", _INTEGER_KINDS)
        time = column("time", frozenset({"event_time"}))
        # A field that reads as a string is present; only the others need a look at the variant.
        present = text.isNotNull() | _present(F.col("_fields")[field.name])
        return _Field(text, integer, present, time)


def _instant(field: Field) -> Column:
    """The instant an event time denotes: an RFC 3339 string or a JSON integer of epoch milliseconds."""
    text, integer = F.col(f"_text_{field.name}"), F.col(f"_integer_{field.name}")
    # try_cast truncates a fraction beyond microseconds; the pattern keeps out the other forms it accepts.
    from_text = F.when(text.rlike(RFC3339), text.try_cast("timestamp"))
    from_millis = F.when(integer.between(_MIN_EPOCH_MS, _MAX_EPOCH_MS), F.timestamp_millis(integer))
    moment = F.coalesce(from_text, from_millis)
    return F.when(F.unix_millis(moment).between(_MIN_EPOCH_MS, _MAX_EPOCH_MS), moment)


@dataclass(frozen=True)
class _Checked:
    value: Column  # the typed event column
    reason: Column  # the field's reason code, or null when the field is fine


def _first_reason(*rules: tuple[Column, str]) -> Column:
    """The code of the first rule whose condition holds (a field has at most one reason), else null."""
    condition, code = rules[0]
    reason = F.when(condition, F.lit(code))
    for condition, code in rules[1:]:
        reason = reason.when(condition, F.lit(code))
    return reason


def _missing_or_wrong_type(field: Field, read: _Field, right_type: Column) -> list[tuple[Column, str]]:
    return [(~read.present, f"missing_field:{field.name}"), (~right_type, f"wrong_type:{field.name}")]


def _check_id(field: Field, read: _Field, limit: Column) -> _Checked:
    # Characters, as the contract counts them; the byte count bounds them and costs nothing to read.
    size = F.octet_length(read.text)
    length_ok = (size >= 1) & ((size <= MAX_ID_LENGTH) | (F.length(read.text) <= MAX_ID_LENGTH))
    return _Checked(
        read.text,
        _first_reason(
            *_missing_or_wrong_type(field, read, read.text.isNotNull()),
            (~length_ok, f"bad_length:{field.name}"),
        ),
    )


def _check_enum(field: Field, read: _Field, limit: Column) -> _Checked:
    text = F.lower(read.text) if field.lower_case else read.text
    return _Checked(
        text,
        _first_reason(
            *_missing_or_wrong_type(field, read, text.isNotNull()),
            (~text.isin(*field.choices), f"unknown_{field.name}"),
        ),
    )


def _check_string(field: Field, read: _Field, limit: Column) -> _Checked:
    return _Checked(read.text, _first_reason((read.text.isNull() & read.present, f"wrong_type:{field.name}")))


def _check_integer(field: Field, read: _Field, limit: Column) -> _Checked:
    value = read.integer if field.default is None else F.coalesce(read.integer, F.lit(field.default))
    return _Checked(value, _first_reason((read.integer.isNull() & read.present, f"wrong_type:{field.name}")))


def _check_event_time(field: Field, read: _Field, limit: Column) -> _Checked:
    # Only a JSON string or a 64-bit JSON integer can be an event time.
    return _Checked(
        read.time,
        _first_reason(
            *_missing_or_wrong_type(field, read, read.text.isNotNull() | read.integer.isNotNull()),
            (read.time.isNull(), "bad_event_time"),
            (read.time > limit, "event_time_in_future"),
        ),
    )


def _check_watch_ms(field: Field, read: _Field, limit: Column) -> _Checked:
    # Required for the watched event types only, and ignored (stored null) for the others.
    watched = F.col("_text_event_type").isin(*WATCHED_EVENT_TYPES)
    bad = read.integer.isNull() | (read.integer < 0)
    return _Checked(F.when(watched, read.integer), _first_reason((watched & bad, "bad_watch_ms")))


_CHECKS: dict[Kind, Callable[[Field, _Field, Column], _Checked]] = {
    "id": _check_id,
    "enum": _check_enum,
    "event_time": _check_event_time,
    "watch_ms": _check_watch_ms,
    "string": _check_string,
    "integer": _check_integer,
}
