"""Stage 2: parse and validate raw records with Spark built-ins (VARIANT), no Python per row.

Each record is parsed once, by Spark's strict JSON parser (``try_parse_json``: a duplicate key, a single
quote, ``NaN`` or a raw control character makes the record malformed). The contract fields are then taken
out of the parsed object in one pass: as VARIANT, to tell a JSON null or an absent field and to read a
JSON integer, and as BINARY, to read a JSON string strictly (a number where a string belongs is
``wrong_type``, never its text). The checks are generated from the field kinds in :mod:`streaming.schema`.

The output keeps one row per non-blank record with the typed event columns (null where a field is
unusable) and an array of reason codes: an empty array means valid. :func:`valid_events` and
:func:`quarantined` split it.

A record replayed from the quarantine (``mediapulse quarantine replay``, :mod:`streaming.replay`) arrives
from a file under a :data:`~streaming.schema.REPLAY_FOLDER` folder and carries its original source and
ingestion time in the :data:`~streaming.schema.REPLAY_FIELD` field, read in the same pass as the contract
fields: its ``source`` and ``ingest_time`` are the original ones, its ``arrival_time`` is when this copy
arrived (what the event-id deduplication counts by).

What keeps this close to the cost of a JSON parse (``tests/streaming/test_parse_plan.py`` pins the first
two points):

* ``reasons`` leaves as the output of a generator. Spark 4.0 pushes a filter through projections by
  substituting their expressions, so a filter on ``reasons`` would otherwise parse every record again.
* The code Spark generates stays under HotSpot's 8000-byte limit per method; above it the whole stage runs
  interpreted. The generator also splits that code in two.
* No VARIANT path lookup misses on the common path: one that finds nothing costs an exception inside
  Spark. Fields are taken out with casts, which cannot miss.
* No per-batch constant: the future-skew limit counts from each record's arrival (``ingest_time``), not
  from the clock, so the stage compiles to the same code every micro-batch (a test pins this too) and
  the JVM optimises it once, not once per batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from streaming.schema import (
    EVENT_FIELDS,
    EVENT_SCHEMA,
    EVENT_TYPES,
    MAX_ID_BYTES,
    PLATFORMS,
    QUARANTINE_SCHEMA,
    REPLAY_FIELD,
    REPLAY_FOLDER,
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

# What is read off each kind of field: a JSON string, a 64-bit JSON integer, or (an event time) either.
_TEXT_KINDS: frozenset[Kind] = frozenset({"id", "enum", "string", "event_time"})
_INTEGER_KINDS: frozenset[Kind] = frozenset({"event_time", "watch_ms", "integer"})
# The contract fields of an object, taken out in one pass. A string field as BINARY: a variant casts to
# BINARY only from a string (JSON has no binary values), so this reads a JSON string's bytes and nothing
# else (a number stays null). The others as VARIANT, to read their JSON type. SQL NULL when absent.
_STRING_KINDS: frozenset[Kind] = _TEXT_KINDS - {"event_time"}
_FIELDS = T.StructType(
    [
        *(
            T.StructField(f.name, T.BinaryType() if f.kind in _STRING_KINDS else T.VariantType())
            for f in EVENT_FIELDS
        ),
        T.StructField(REPLAY_FIELD, T.VariantType()),  # absent (null) but in a replayed record
    ]
)
# A replayed record's reference to its original: source and ingestion time (epoch microseconds).
_REPLAY_REFERENCE = "struct<source:string,ingest_time_us:bigint>"

# The string fields as VARIANT, to tell an absent or JSON null field from one of another type; taken out
# only for a record with a string field that did not read as a string.
_STRINGS_AS_VARIANTS = T.StructType(
    [T.StructField(f.name, T.VariantType()) for f in EVENT_FIELDS if f.kind in _STRING_KINDS]
)


def parse_events(
    raw: DataFrame,
    max_future_skew: timedelta,
    event_types: Sequence[str] = EVENT_TYPES,
    platforms: Sequence[str] = PLATFORMS,
) -> DataFrame:
    """Raw records (``value, source, ingest_time``) -> typed event columns plus ``source``,
    ``ingest_time``, ``arrival_time``, ``raw`` and ``reasons``.

    Blank lines are dropped (they are not records). ``reasons`` is empty for a valid event.
    ``event_types`` and ``platforms`` (lower-case) are the values accepted (``validation.*``).
    ``arrival_time`` is the raw frame's ``ingest_time``; ``source`` and ``ingest_time`` are the raw
    frame's too, but for a replayed record: its original ones (see the module docstring).
    """
    choices = {"event_type": tuple(event_types), "platform": tuple(platforms)}
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
        F.col("_document"),
        # null unless the value is an object
        F.try_variant_get("_document", "$[0]", _FIELDS.simpleString()).alias("_fields"),
    )
    reads = taken.select(
        "raw",
        "source",
        "ingest_time",
        _is_one_value(F.col("_values"), F.col("raw"), F.col("_may_close_early")).alias("_one_value"),
        "_fields",
        _strings_as_variants().alias("_strings_as_variants"),
        _replay_reference().alias("_replayed_from"),
        *[column for f in EVENT_FIELDS for column in _read(f)],
    )
    # An event time is interpreted once, here: its column and its checks all use the instant.
    timed = reads.select(
        "*", *[_instant(f).alias(f"_time_{f.name}") for f in EVENT_FIELDS if f.kind == "event_time"]
    )
    # Ahead of the record's arrival, not of the clock: a batch replayed after a failure classifies its
    # records as the first attempt did, and no per-batch constant enters the generated code (a constant
    # would make Spark compile, and the JVM optimise, the whole stage again every micro-batch).
    limit = F.col("ingest_time") + F.make_dt_interval(secs=F.lit(int(max_future_skew.total_seconds())))
    fields = [replace(f, choices=choices.get(f.name, f.choices)) for f in EVENT_FIELDS]
    checks = {f.name: _CHECKS[f.kind](f, _Read.of(f), limit) for f in fields}
    record_reason = F.when(~F.col("_one_value"), F.lit("malformed_json")).when(
        F.col("_fields").isNull(), F.lit("not_an_object")
    )
    checked = timed.select(
        "raw",
        "source",
        "ingest_time",
        "_replayed_from",
        record_reason.alias("_record_reason"),
        *[check.value.alias(name) for name, check in checks.items()],
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
    # into; what follows it is compiled into a method of its own.
    original = F.col("_replayed_from")
    return checked.select(
        *[f.name for f in EVENT_FIELDS],
        F.coalesce(original["source"], "source").alias("source"),
        F.coalesce(F.timestamp_micros(original["ingest_time_us"]), "ingest_time").alias("ingest_time"),
        F.col("ingest_time").alias("arrival_time"),
        "raw",
        F.explode(F.array(reasons)).alias("reasons"),
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
    """The elements of a document made by :func:`_parse`, each cast to BINARY: the bytes of a string (the
    copy of a record holding ``]``), null for anything else (not read, so this costs little)."""
    return F.try_variant_get(document, "$", "array<binary>")


def _is_one_value(values: Column, value: Column, may_close_early: Column) -> Column:
    """Whether the record is exactly one JSON value, from the :func:`_values` of its document."""
    count = F.size(values)
    followed_by_its_copy = (count == 2) & values[1].cast("string").eqNullSafe(value)
    single = F.when(may_close_early, followed_by_its_copy).otherwise(count == 1)
    return values.isNotNull() & single  # no values: not JSON at all


def _codes(reasons: list[Column]) -> Column:
    """The non-null reason codes, in field order (array_remove is compiled code, array_compact is not)."""
    return F.array_remove(F.array(*[F.coalesce(r, F.lit("")) for r in reasons]), "")


def _replay_reference() -> Column:
    """A replayed record's original source and ingestion time (:data:`_REPLAY_REFERENCE`), taken only
    from a record that arrived from a replay folder (no other record can claim another source)."""
    reference = F.col("_fields")[REPLAY_FIELD]
    replayed = reference.isNotNull() & F.contains(F.col("source"), F.lit(f"/{REPLAY_FOLDER}/"))
    return F.when(replayed, F.try_variant_get(reference, "$", _REPLAY_REFERENCE))


# --- the fields -----------------------------------------------------------------------------------


def _strings_as_variants() -> Column:
    """:data:`_STRINGS_AS_VARIANTS`, for a record with a string field that did not read as a string."""
    strings = [F.col("_fields")[f.name] for f in EVENT_FIELDS if f.kind in _STRING_KINDS]
    any_unread = functools.reduce(lambda a, b: a | b, [s.isNull() for s in strings])
    return F.when(any_unread, F.try_variant_get("_document", "$[0]", _STRINGS_AS_VARIANTS.simpleString()))


def _read(field: Field) -> list[Column]:
    """The read-step columns of one field: its JSON string and/or its JSON integer (64-bit)."""
    columns = []
    if field.kind in _TEXT_KINDS:
        value = F.col("_fields")[field.name]
        binary = value if field.kind in _STRING_KINDS else F.try_variant_get(value, "$", "binary")
        text = binary.cast("string")
        columns.append(text.alias(f"_text_{field.name}"))
    if field.kind in _INTEGER_KINDS:
        variant = F.col("_fields")[field.name]
        is_integer = F.schema_of_variant(variant) == "BIGINT"
        if field.kind in _TEXT_KINDS:
            is_integer = text.isNull() & is_integer  # a string has no integer to look for
        columns.append(
            F.when(is_integer, F.try_variant_get(variant, "$", "bigint")).alias(f"_integer_{field.name}")
        )
    return columns


@dataclass(frozen=True)
class _Read:
    """What was read off one field, as the check step sees it."""

    text: Column  # the value of a JSON string, else null
    integer: Column  # the value of a JSON integer (64-bit), else null
    present: Column  # neither absent nor JSON null
    time: Column  # the instant an event time denotes, else null

    @staticmethod
    def of(field: Field) -> _Read:
        def column(part: str, kinds: frozenset[Kind]) -> Column:
            return F.col(f"_{part}_{field.name}") if field.kind in kinds else F.lit(None)

        text = column("text", _TEXT_KINDS)
        variants = "_strings_as_variants" if field.kind in _STRING_KINDS else "_fields"
        variant = F.col(variants)[field.name]
        # A field that reads as a string is present; only for the others is the variant looked at.
        present = text.isNotNull() | (variant.isNotNull() & ~F.is_variant_null(variant))
        return _Read(
            text, column("integer", _INTEGER_KINDS), present, column("time", frozenset({"event_time"}))
        )


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


def _missing_or_wrong_type(field: Field, read: _Read, right_type: Column) -> list[tuple[Column, str]]:
    return [(~read.present, f"missing_field:{field.name}"), (~right_type, f"wrong_type:{field.name}")]


def _check_id(field: Field, read: _Read, limit: Column) -> _Checked:
    # UTF-8 bytes, as the contract (and a Redshift VARCHAR) counts them: a string knows its byte count.
    size = F.octet_length(read.text)
    length_ok = (size >= 1) & (size <= MAX_ID_BYTES)
    return _Checked(
        read.text,
        _first_reason(
            *_missing_or_wrong_type(field, read, read.text.isNotNull()),
            (~length_ok, f"bad_length:{field.name}"),
        ),
    )


def _check_enum(field: Field, read: _Read, limit: Column) -> _Checked:
    text = F.lower(read.text) if field.lower_case else read.text
    return _Checked(
        text,
        _first_reason(
            *_missing_or_wrong_type(field, read, text.isNotNull()),
            (~text.isin(*field.choices), f"unknown_{field.name}"),
        ),
    )


def _check_string(field: Field, read: _Read, limit: Column) -> _Checked:
    return _Checked(read.text, _first_reason((read.text.isNull() & read.present, f"wrong_type:{field.name}")))


def _check_integer(field: Field, read: _Read, limit: Column) -> _Checked:
    value = read.integer if field.default is None else F.coalesce(read.integer, F.lit(field.default))
    return _Checked(value, _first_reason((read.integer.isNull() & read.present, f"wrong_type:{field.name}")))


def _check_event_time(field: Field, read: _Read, limit: Column) -> _Checked:
    # Only a JSON string or a 64-bit JSON integer can be an event time.
    return _Checked(
        read.time,
        _first_reason(
            *_missing_or_wrong_type(field, read, read.text.isNotNull() | read.integer.isNotNull()),
            (read.time.isNull(), "bad_event_time"),
            (read.time > limit, "event_time_in_future"),
        ),
    )


def _check_watch_ms(field: Field, read: _Read, limit: Column) -> _Checked:
    # Required for the watched event types only, and ignored (stored null) for the others.
    watched = F.col("_text_event_type").isin(*WATCHED_EVENT_TYPES)  # the event type as sent
    bad = read.integer.isNull() | (read.integer < 0)
    return _Checked(F.when(watched, read.integer), _first_reason((watched & bad, "bad_watch_ms")))


_CHECKS: dict[Kind, Callable[[Field, _Read, Column], _Checked]] = {
    "id": _check_id,
    "enum": _check_enum,
    "event_time": _check_event_time,
    "watch_ms": _check_watch_ms,
    "string": _check_string,
    "integer": _check_integer,
}
