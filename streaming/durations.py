"""Durations in configuration files: ``'30 s'``, ``'5 min'``, ``'1 h'``, ``250 ms`` or plain seconds."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer

_DURATION = re.compile(
    r"^\s*(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?)\s*$",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> Any:
    """``'15 min'``, ``'30 s'``, ``2`` (seconds) or a timedelta -> timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. '30 s', '5 min', '1 h')")
        amount, unit = float(match.group(1)), match.group(2).lower()
        key = "ms" if unit.startswith(("ms", "milli")) else unit[0]
        return timedelta(seconds=amount * _UNIT_SECONDS[key])
    raise ValueError(f"not a duration: {value!r}")


def spark_interval(value: timedelta) -> str:
    """Render a duration the way Spark's interval parser accepts it (``'300 seconds'``)."""
    millis = round(value.total_seconds() * 1000)
    if millis % 1000 == 0:
        return f"{millis // 1000} seconds"
    return f"{millis} milliseconds"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(spark_interval, return_type=str),
]
PositiveDuration = Annotated[Duration, Field(gt=timedelta(0))]
