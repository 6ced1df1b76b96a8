"""Stage 2: parse and validate raw records, each parsed once inside Spark's JVM.

Each non-blank record goes through the record validator (``streaming/java``, built by
:mod:`streaming.validator_jar`): one pass of Jackson's strict parser, the parser Spark's own JSON reader
and ``parse_json`` use, over the record's text, reading the contract fields of
:mod:`streaming.schema` off the parse as it goes and checking them. A duplicate key, a single quote,
``NaN``, a raw control character or anything after the first JSON value makes the record malformed; a
number where a string belongs is ``wrong_type``, never its text. The contract (field names, kinds,
choices, defaults) is passed to the validator from :data:`~streaming.schema.EVENT_FIELDS`, its single
definition; ``tests/oracle.py`` is the independent reference the tests hold it to.

The output keeps one row per non-blank record with the typed event columns (null where a field is
unusable) and an array of reason codes: an empty array means valid. :func:`valid_events` and
:func:`quarantined` split it.

A record replayed from the quarantine (``mediapulse quarantine replay``, :mod:`streaming.replay`) arrives
from a file under a :data:`~streaming.schema.REPLAY_FOLDER` folder and carries its original source and
ingestion time in the :data:`~streaming.schema.REPLAY_FIELD` field, read in the same pass as the contract
fields: its ``source`` and ``ingest_time`` are the original ones, its ``arrival_time`` is when this copy
arrived (what the event-id deduplication counts by).

Why this costs about a JSON parse (``tests/streaming/test_parse_plan.py`` pins the first two points):

* The validator is a nondeterministic function to Spark's optimizer, so it is never copied into a filter
  or another projection: whatever a caller filters on, each record is parsed once.
* Its arguments hold no per-batch constant: the future-skew limit counts from each record's arrival
  (``ingest_time``), not from the clock, so the stage compiles to the same code every micro-batch and
  the JVM optimises it once.
* Nothing is built for a field the contract does not name: the parser skips over it.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from datetime import timedelta

from py4j.java_gateway import JavaClass
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from streaming import validator_jar
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
)
from streaming.validator_jar import CLASS_NAME, ValidatorJarError

# The SQL function the validator is registered as (plus a digest of the accepted values it checks).
VALIDATOR_FUNCTION = "mediapulse_validate"


def _returned(field: Field) -> T.DataType:
    """What the validator returns for a field: its stored type, but an event time in epoch microseconds."""
    stored = EVENT_SCHEMA[field.name].dataType
    return T.LongType() if isinstance(stored, T.TimestampType) else stored


_CHECKED = T.StructType(
    [
        *(T.StructField(f.name, _returned(f)) for f in EVENT_FIELDS),
        T.StructField("reasons", T.ArrayType(T.StringType(), False), False),
        T.StructField("replay_source", T.StringType()),
        T.StructField("replay_ingest_time_us", T.LongType()),
    ]
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
    validate = _register(raw.sparkSession, tuple(event_types), tuple(platforms))
    value = F.col("value")
    # A record is a line holding more than whitespace, as Python's str.strip() counts it (`{` is a
    # shortcut for the usual record).
    records = raw.filter(F.startswith(value, F.lit("{")) | value.rlike(r"(?U)[^\s\x1c-\x1f]"))
    replayed = F.contains(F.col("source"), F.lit(f"/{REPLAY_FOLDER}/"))  # no other record names its source
    limit_us = F.unix_micros("ingest_time") + F.lit(int(max_future_skew / timedelta(microseconds=1)))
    checked = records.select(
        value.alias("raw"),
        "source",
        "ingest_time",
        F.call_function(validate, value, replayed, limit_us).alias("_checked"),
    )
    original_ingest = F.timestamp_micros("_checked.replay_ingest_time_us")
    return checked.select(
        *(_typed(f).alias(f.name) for f in EVENT_FIELDS),
        F.coalesce("_checked.replay_source", "source").alias("source"),
        F.coalesce(original_ingest, "ingest_time").alias("ingest_time"),
        F.col("ingest_time").alias("arrival_time"),
        "raw",
        F.col("_checked.reasons").alias("reasons"),
    )


def _typed(field: Field) -> Column:
    """A field as the validator returned it, an event time turned back into a timestamp."""
    column = F.col(f"_checked.{field.name}")
    return F.timestamp_micros(column) if field.kind == "event_time" else column


def _register(spark: SparkSession, event_types: tuple[str, ...], platforms: tuple[str, ...]) -> str:
    """Register the validator for these accepted values; the name of its SQL function."""
    choices = {"event_type": event_types, "platform": platforms}
    digest = hashlib.sha256(repr((event_types, platforms)).encode()).hexdigest()[:12]
    name = f"{VALIDATOR_FUNCTION}_{digest}"
    jvm = spark._jvm
    validator_class = functools.reduce(getattr, CLASS_NAME.split("."), jvm)
    if not isinstance(validator_class, JavaClass):  # py4j's answer for a class it cannot load
        raise ValidatorJarError(
            f"the record validator ({CLASS_NAME}) is not on Spark's classpath: a session this process "
            f"starts adds {validator_jar.JAR} (built by `make install`, which needs a JDK); under "
            f"spark-submit pass that jar with --jars"
        )
    validator = validator_class(
        [f.name for f in EVENT_FIELDS],
        [f.kind for f in EVENT_FIELDS],
        [list(choices.get(f.name, f.choices)) for f in EVENT_FIELDS],
        [f.lower_case for f in EVENT_FIELDS],
        [f.default for f in EVENT_FIELDS],
        MAX_ID_BYTES,
        list(WATCHED_EVENT_TYPES),
        "event_type",
        REPLAY_FIELD,
    )
    validator_class.register(spark._jsparkSession, name, validator, _CHECKED.json())
    return name


def valid_events(parsed: DataFrame) -> DataFrame:
    """The valid rows of :func:`parse_events`, in the stored event schema."""
    return parsed.filter(F.size("reasons") == 0).select(*EVENT_SCHEMA.fieldNames())


def quarantined(parsed: DataFrame) -> DataFrame:
    """The invalid rows of :func:`parse_events`: raw text, reason codes, source and ingestion time."""
    return parsed.filter(F.size("reasons") > 0).select(*QUARANTINE_SCHEMA.fieldNames())
