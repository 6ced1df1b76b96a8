"""Engagement rows for Spark tests, shaped by :data:`streaming.schema.ENGAGEMENT`: a test names the values
it is about; every other metric is 0 and every other column null."""

from __future__ import annotations

from typing import Any

from pyspark.sql import types as T

from streaming.schema import ENGAGEMENT, Role

METRICS = ENGAGEMENT.names("metric")


def engagement_schema(*roles: Role) -> T.StructType:
    """The engagement columns of ``roles``, in table order, as a Spark schema."""
    names = ENGAGEMENT.names(*roles)
    return T.StructType([f for f in ENGAGEMENT.spark_schema().fields if f.name in names])


def engagement_row(schema: T.StructType, **values: Any) -> tuple[Any, ...]:
    """One row of ``schema`` holding ``values``; other metrics 0, other columns null."""
    unknown = set(values) - set(schema.names)
    assert not unknown, f"not columns of the schema: {sorted(unknown)}"
    return tuple(values.get(name, 0 if name in METRICS else None) for name in schema.names)
