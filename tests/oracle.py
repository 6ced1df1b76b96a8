"""Ground truth for end-to-end tests: the event contract re-implemented in plain Python.

This module deliberately shares no code with ``streaming/`` or ``sinks/``. It reads the same files the
pipeline reads and computes, with nothing but :mod:`json` and :mod:`datetime`, what the pipeline must
produce: which records are valid, which are quarantined and why, which are duplicates, and the
per-window engagement aggregates.

Contract decisions this oracle makes explicit (the pipeline must agree with them):

* A line that is empty or holds only whitespace is blank and is not a record. Lines end at ``\\n``,
  ``\\r\\n`` or ``\\r``.
* ``null`` is the same as an absent field.
* Required strings (``event_id``, ``content_id``, ``affiliate_id``, ``user_id``) must be JSON strings of
  1-128 bytes in UTF-8 (a Redshift ``VARCHAR(128)`` counts bytes); an unpaired surrogate escape such as
  ``"\\ud800"`` is stored as ``?`` and counts one byte. ``event_type`` and ``platform`` must be strings
  from their fixed sets (``platform`` compared case-insensitively); any other string is ``unknown_*``,
  any other JSON type ``wrong_type:*``.
* ``event_time`` is either a string of exactly ``YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`` that
  names a real instant, or a JSON integer of epoch milliseconds. Any other string is ``bad_event_time``;
  any other JSON type (float, boolean, array, object) is ``wrong_type:event_time``. Fractions beyond six
  digits are truncated to microseconds. An instant more than ``max_future_skew`` after ``now`` is
  ``event_time_in_future``.
* ``watch_ms`` is checked only for ``progress`` and ``complete``: it must be a JSON integer in
  ``[0, 2**63 - 1]``; anything else (absent, negative, float, string, boolean) is ``bad_watch_ms``. For
  other event types it is ignored whatever it holds, and normalised to ``None``.
* ``schema_version`` must be a JSON integer (64-bit) when present; it defaults to 1.
* Optional strings (``session_id``, ``placement``, ``country``, ``app_version``) must be strings when
  present; their length is not constrained.
* Deduplication applies to valid records only: the first valid record with an ``event_id`` wins and
  later valid records with that id are duplicates. Quarantined records are never duplicates.
* Windows are tumbling windows aligned to the Unix epoch, keyed by their start, content, affiliate,
  placement and platform. An event without a placement (absent, ``null`` or ``""``) is keyed as
  ``"(none)"``.
* Unique viewers over a day are distinct ``user_id``s of the UTC day; a rolled-up key is ``"(all)"``.
* Across runs (:func:`expected_runs`), a run starts with the watermark its predecessors left: the newest
  valid event time seen minus the watermark delay. A valid, new event of a later run whose window ends at
  or before it is late: it is in the event log but in no window.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

EVENT_TYPES = frozenset({"impression", "click", "play_start", "progress", "complete"})
PLATFORMS = frozenset({"web", "ios", "android", "tv"})
WATCHED_EVENT_TYPES = frozenset({"progress", "complete"})
REQUIRED_STRINGS = ("event_id", "content_id", "affiliate_id", "user_id")
OPTIONAL_STRINGS = ("session_id", "placement", "country", "app_version")
MAX_STRING_BYTES = 128
MAX_LONG = 2**63 - 1
MIN_LONG = -(2**63)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NO_PLACEMENT = "(none)"
ALL = "(all)"
DIMENSIONS = ("content_id", "affiliate_id", "placement", "platform")

_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Expected:
    """What the pipeline must report for a set of input files."""

    records: int
    valid_unique: int
    quarantined: int
    duplicates: int
    aggregates: dict[tuple[datetime, str, str, str, str], dict[str, int]]
    events: list[dict[str, Any]] = field(default_factory=list, repr=False)
    reasons: dict[str, int] = field(default_factory=dict)
    late: int = 0


def read_records(paths: Iterable[Path | str]) -> list[tuple[str, str]]:
    """Every non-blank line of ``paths`` (given in arrival order) as ``(path, line)``; ``.gz`` is unpacked."""
    records: list[tuple[str, str]] = []
    for path in paths:
        path = Path(path)
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        for line in _LINE_BREAK.split(data.decode("utf-8")):
            if line.strip():
                records.append((str(path), line))
    return records


def parse_event_time(value: str) -> datetime | None:
    """An RFC 3339 string as an aware UTC datetime (fraction truncated to microseconds), else ``None``."""
    match = _RFC3339.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if zone == "Z":
        offset = timedelta(0)
    else:
        off_hours, off_minutes = int(zone[1:3]), int(zone[4:6])
        if off_hours > 23 or off_minutes > 59:
            return None
        offset = timedelta(hours=off_hours, minutes=off_minutes)
        if zone[0] == "-":
            offset = -offset
    micros = int((fraction or "")[:6].ljust(6, "0"))
    try:
        local = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros,
            tzinfo=timezone(offset),
        )
        return local.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def epoch_millis_to_datetime(value: int) -> datetime | None:
    """Epoch milliseconds as an aware UTC datetime, ``None`` when outside the representable range."""
    try:
        return EPOCH + timedelta(milliseconds=value)
    except (ValueError, OverflowError):
        return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def classify(
    raw: str,
    now: datetime,
    max_future_skew: timedelta = timedelta(hours=1),
    platforms: Iterable[str] = PLATFORMS,
) -> tuple[dict[str, Any] | None, list[str]]:
    """``(normalized event, [])`` for a valid record, ``(None, sorted reason codes)`` for an invalid one;
    ``platforms`` are the accepted ones (lower-case)."""
    platforms = frozenset(platforms)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    try:
        obj = json.loads(raw)
    except ValueError:
        return None, ["malformed_json"]
    if not isinstance(obj, dict):
        return None, ["not_an_object"]

    reasons: list[str] = []
    event: dict[str, Any] = {}

    for name in REQUIRED_STRINGS:
        value = obj.get(name)
        if value is None:
            reasons.append(f"missing_field:{name}")
        elif not isinstance(value, str):
            reasons.append(f"wrong_type:{name}")
        elif not 1 <= len(value.encode("utf-8", "replace")) <= MAX_STRING_BYTES:
            reasons.append(f"bad_length:{name}")
        else:
            event[name] = value

    event_type = obj.get("event_type")
    if event_type is None:
        reasons.append("missing_field:event_type")
    elif not isinstance(event_type, str):
        reasons.append("wrong_type:event_type")
    elif event_type not in EVENT_TYPES:
        reasons.append("unknown_event_type")
    else:
        event["event_type"] = event_type

    platform = obj.get("platform")
    if platform is None:
        reasons.append("missing_field:platform")
    elif not isinstance(platform, str):
        reasons.append("wrong_type:platform")
    elif platform.lower() not in platforms:
        reasons.append("unknown_platform")
    else:
        event["platform"] = platform.lower()

    raw_time = obj.get("event_time")
    event_time: datetime | None = None
    if raw_time is None:
        reasons.append("missing_field:event_time")
    elif isinstance(raw_time, str):
        event_time = parse_event_time(raw_time)
        if event_time is None:
            reasons.append("bad_event_time")
    elif _is_int(raw_time):
        event_time = epoch_millis_to_datetime(raw_time)
        if event_time is None:
            reasons.append("bad_event_time")
    else:
        reasons.append("wrong_type:event_time")
    if event_time is not None:
        if event_time > now + max_future_skew:
            reasons.append("event_time_in_future")
        event["event_time"] = event_time

    event["watch_ms"] = None
    if event.get("event_type") in WATCHED_EVENT_TYPES:
        watch_ms = obj.get("watch_ms")
        if not _is_int(watch_ms) or not 0 <= watch_ms <= MAX_LONG:
            reasons.append("bad_watch_ms")
        else:
            event["watch_ms"] = watch_ms

    for name in OPTIONAL_STRINGS:
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            reasons.append(f"wrong_type:{name}")
        event[name] = value

    schema_version = obj.get("schema_version")
    if schema_version is None:
        event["schema_version"] = 1
    elif not _is_int(schema_version) or not MIN_LONG <= schema_version <= MAX_LONG:
        reasons.append("wrong_type:schema_version")
    else:
        event["schema_version"] = schema_version

    if reasons:
        return None, sorted(reasons)
    return {
        name: event[name]
        for name in (
            "event_id", "event_type", "event_time", "content_id", "affiliate_id", "platform", "user_id",
            "watch_ms", "session_id", "placement", "country", "app_version", "schema_version",
        )
    }, []


def window_start(moment: datetime, window: timedelta) -> datetime:
    """Start of the epoch-aligned tumbling window of length ``window`` that holds ``moment``."""
    return EPOCH + ((moment - EPOCH) // window) * window


def dimensions(event: dict[str, Any]) -> tuple[str, str, str, str]:
    """An event's content, affiliate, placement (``"(none)"`` when it has none) and platform."""
    return (event["content_id"], event["affiliate_id"], event["placement"] or NO_PLACEMENT, event["platform"])


def daily_viewers(
    events: Iterable[dict[str, Any]], level: Iterable[str]
) -> dict[tuple[datetime, str, str, str, str], int]:
    """Exact distinct users per UTC day and the ``level``'s dimensions (the others ``"(all)"``)."""
    kept = set(level)
    users: dict[tuple[datetime, str, str, str, str], set[str]] = {}
    for event in events:
        moment = event["event_time"]
        day = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
        values = dimensions(event)
        key = (day, *(v if name in kept else ALL for name, v in zip(DIMENSIONS, values, strict=True)))
        users.setdefault(key, set()).add(event["user_id"])
    return {key: len(ids) for key, ids in users.items()}


def expected(
    paths: Iterable[Path | str],
    now: datetime,
    window: timedelta = timedelta(minutes=5),
    max_future_skew: timedelta = timedelta(hours=1),
    platforms: Iterable[str] = PLATFORMS,
) -> Expected:
    """Counts and per-window aggregates for ``paths`` read in arrival order, in one run.

    Assumes no valid event falls behind the watermark, which holds for simulated traffic: its
    out-of-order bound is far below the watermark delay.
    """
    return expected_runs([read_records(paths)], now, window, max_future_skew, platforms)


def expected_runs(
    runs: Iterable[Iterable[tuple[str, str]]],
    now: datetime,
    window: timedelta = timedelta(minutes=5),
    max_future_skew: timedelta = timedelta(hours=1),
    platforms: Iterable[str] = PLATFORMS,
    watermark: timedelta = timedelta(minutes=10),
) -> Expected:
    """Counts and per-window aggregates for records ``(path, line)`` arriving in runs, each run's in
    order; a run's late events (see the module docstring) are in ``events`` and ``late``, not in windows."""
    platforms = frozenset(platforms)
    records: list[tuple[str, str]] = []
    seen: set[str] = set()
    events: list[dict[str, Any]] = []
    windowed: list[dict[str, Any]] = []
    reasons: dict[str, int] = {}
    quarantined = duplicates = late = 0
    newest: datetime | None = None
    for run in runs:
        mark = None if newest is None else newest - watermark
        for record in run:
            records.append(record)
            event, why = classify(record[1], now, max_future_skew, platforms)
            if event is None:
                quarantined += 1
                for reason in why:
                    reasons[reason] = reasons.get(reason, 0) + 1
            elif event["event_id"] in seen:
                duplicates += 1
            else:
                seen.add(event["event_id"])
                events.append(event)
                if mark is not None and window_start(event["event_time"], window) + window <= mark:
                    late += 1
                else:
                    windowed.append(event)
        times = [e["event_time"] for e in events]
        newest = max(times) if times else newest

    return Expected(
        records=len(records),
        valid_unique=len(events),
        quarantined=quarantined,
        duplicates=duplicates,
        aggregates=aggregate(windowed, window),
        events=events,
        reasons=dict(sorted(reasons.items())),
        late=late,
    )


def aggregate(
    events: Iterable[dict[str, Any]], window: timedelta
) -> dict[tuple[datetime, str, str, str, str], dict[str, int]]:
    """Per-window engagement of ``events`` (each counted once)."""
    counters = {
        "impression": "impressions",
        "click": "clicks",
        "play_start": "play_starts",
        "complete": "completions",
    }
    aggregates: dict[tuple[datetime, str, str, str, str], dict[str, int]] = {}
    viewers: dict[tuple[datetime, str, str, str, str], set[str]] = {}
    for event in events:
        key = (window_start(event["event_time"], window), *dimensions(event))
        row = aggregates.setdefault(
            key,
            {"impressions": 0, "clicks": 0, "play_starts": 0, "completions": 0, "watch_time_ms": 0,
             "unique_viewers": 0},
        )
        counter = counters.get(event["event_type"])
        if counter is not None:
            row[counter] += 1
        if event["watch_ms"] is not None:
            row["watch_time_ms"] += event["watch_ms"]
        viewers.setdefault(key, set()).add(event["user_id"])
    for key, users in viewers.items():
        aggregates[key]["unique_viewers"] = len(users)
    return aggregates
