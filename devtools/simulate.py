"""Realistic client traffic for local runs and tests, deterministic by seed.

Viewers open sessions on one platform, through one affiliate and placement, and move through the funnel
impression -> click -> play_start -> progress heartbeats -> complete. Content popularity is Zipf. The
records are encoded the way real clients send them: several ``event_time`` encodings, mixed-case
platforms, optional fields left out or ``null``, unknown extra fields. A share of records is malformed
(one of :data:`MALFORMED_KINDS`) and a share is re-sent later as client retries. Arrival order is event
time plus a random delay bounded by ``out_of_order``.

:func:`write_files` lays the lines out like Firehose deliveries (``YYYY/MM/DD/HH/`` folders, about half
of the files gzipped) and :func:`write_dimension` writes the content dimension as CSV or Parquet.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import gzip
import io
import itertools
import json
import logging
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_START = datetime(2026, 11, 1, tzinfo=UTC)

MALFORMED_KINDS = (
    "broken_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "unknown_event_type",
    "unknown_platform",
    "bad_event_time",
    "future_event_time",
    "negative_watch_ms",
    "missing_watch_ms",
)

MAX_RETRY_DELAY = timedelta(seconds=60)

CONTENT_COLUMNS = (
    "content_id", "title", "category", "content_type", "duration_s", "publisher", "published_at",
)

# Funnel and shape of a session.
CLICK_RATE = 0.08
PLAY_RATE = 0.70  # of clicks
COMPLETE_RATE = 0.40  # of plays
CONTENT_ZIPF_S = 1.1
IMPRESSIONS_PER_SESSION = 7.0  # mean
PROGRESS_EVERY_S = (10.0, 30.0)
SESSION_WARMUP = timedelta(minutes=30)  # sessions may begin before `start`; their early events are dropped

PLATFORM_WEIGHTS = {"web": 0.50, "ios": 0.20, "android": 0.20, "tv": 0.10}
PLATFORM_SPELLINGS = {"web": ("Web", "WEB"), "ios": ("IOS", "iOS"), "android": ("Android", "ANDROID"),
                      "tv": ("TV", "Tv")}
PLACEMENTS = {
    "web": ("home_hero", "rail_trending", "article_inline", "related", "search"),
    "ios": ("home_hero", "rail_trending", "related", "push", "search"),
    "android": ("home_hero", "rail_trending", "related", "push", "search"),
    "tv": ("tv_home_row", "tv_autoplay", "tv_search"),
}
APP_VERSIONS = {
    "web": ("web-2026.10.4", "web-2026.11.1"),
    "ios": ("7.3.2", "7.4.0", "7.4.1"),
    "android": ("7.2.9", "7.4.0", "7.4.1"),
    "tv": ("3.1.0", "3.2.0"),
}
# Country and the UTC offsets its clients stamp on local event times.
COUNTRIES = {
    "US": (0.40, ("-05:00", "-06:00", "-08:00")),
    "GB": (0.12, ("+00:00",)),
    "DE": (0.10, ("+01:00",)),
    "FR": (0.07, ("+01:00",)),
    "BR": (0.08, ("-03:00",)),
    "IN": (0.08, ("+05:30",)),
    "CA": (0.05, ("-05:00", "-08:00")),
    "MX": (0.04, ("-06:00",)),
    "JP": (0.03, ("+09:00",)),
    "AU": (0.03, ("+11:00",)),
}
EXTRA_FIELDS: tuple[dict[str, Any], ...] = (
    {"sdk": "mp-js/3.2.0"},
    {"experiment": "rail_v2", "variant": "b"},
    {"debug": {"buffer_ms": 120, "dropped_frames": 0}},
    {"consent": True},
    {"tags": ["autoplay", "muted"]},
    {"client_clock_skew_ms": -35},
)

CONTENT_TYPES = (("video", 0.55), ("clip", 0.35), ("article", 0.10))
CONTENT_PREFIX = {"video": "vid", "clip": "clp", "article": "art"}
CATEGORIES = ("news", "sports", "entertainment", "tech", "music", "kids", "lifestyle", "business")
PUBLISHERS = (
    "Northwind Media", "Blue Harbor Studios", "Meridian News", "Kestrel Sports", "Lumen Kids",
    "Ostrava Films", "Paloma Music", "Cobalt Tech Review", "Señal Latina", "Fjord & Pine",
)
TITLE_WORDS = (
    "Morning", "Briefing", "Highlights", "Inside", "the", "Final", "Week", "Live", "Recap", "Street",
    "Kitchen", "Mountain", "Derby", "Election", "Markets", "Open", "Studio", "Sessions", "Unboxed",
    "Weekend", "City", "Night", "Story", "Road", "Trip", "Guide", "Explained", "Behind", "Scenes", "Café",
)

BAD_TIME_FORMATS = (
    "{d:%Y-%m-%d %H:%M:%S}",  # space instead of T, no zone
    "{d:%Y-%m-%dT%H:%M:%S}",  # no zone
    "{d:%Y/%m/%d %H:%M:%S}",
    "{d:%d/%m/%Y %H:%M:%S}",
    "{d:%Y-%m-%dt%H:%M:%Sz}",  # lower-case t and z
    "{d:%Y-%m-%dT%H:%M:%S}+0100",  # offset without colon
    "{d:%Y-%m-%dT%H:%M:%S}.Z",  # empty fraction
    "{d:%Y-%m-%dT%H:%M:%S}.1234567891Z",  # ten fraction digits
    "{d:%Y}-11-31T{d:%H:%M:%S}Z",  # no such day
    "{ms}",  # epoch millis as a string
    "yesterday",
)
UNKNOWN_EVENT_TYPES = ("share", "hover", "ad_skip", "pause")
UNKNOWN_PLATFORMS = ("roku", "playstation", "webos", "smartfridge")


@dataclass(frozen=True)
class SimulationSpec:
    """Everything that shapes simulated traffic. The same spec (and ``now``) gives the same lines."""

    events: int = 10_000
    seed: int = 7
    duplicates: float = 0.02  # share of records re-sent as client retries
    malformed: float = 0.01  # share of records that break the contract
    start: datetime = DEFAULT_START
    span: timedelta = timedelta(hours=2)  # of event time
    contents: int = 500
    affiliates: int = 25
    users: int = 3000
    out_of_order: timedelta = timedelta(seconds=120)  # max delay of arrival behind event time
    missing_content: float = 0.02  # share of used content ids left out of the dimension
    files: int = 24
    gzip: bool = True
    # Processing time that future-dated malformed records are a day ahead of; None means the wall clock.
    now: datetime | None = None

    def __post_init__(self) -> None:
        if self.events <= 0:
            raise ValueError(f"events must be > 0, got {self.events}")
        for name in ("duplicates", "malformed", "missing_content"):
            rate = getattr(self, name)
            if not 0 <= rate < 1:
                raise ValueError(f"{name} rate must be in [0, 1), got {rate}")
        for name in ("contents", "affiliates", "users", "files"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.span <= timedelta(0):
            raise ValueError(f"span must be positive, got {self.span}")
        if self.out_of_order < timedelta(0):
            raise ValueError(f"out_of_order must not be negative, got {self.out_of_order}")
        for name in ("start", "now"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware, got {moment}")


@dataclass(frozen=True)
class Traffic:
    """Simulated input: the text lines in arrival order and the content dimension.

    ``arrivals``, ``kinds`` and ``resent`` run parallel to ``lines``: when each line arrived, which
    malformed kind it is (``None`` for a valid record) and whether it is a client retry of an earlier line.
    """

    lines: list[str]
    content_rows: list[dict[str, Any]]
    arrivals: list[datetime] = field(repr=False)
    kinds: list[str | None] = field(repr=False)
    resent: list[bool] = field(repr=False)
    now: datetime

    @property
    def duplicates(self) -> int:
        return sum(self.resent)

    @property
    def malformed(self) -> Counter[str]:
        """Malformed records by kind, counting each record once (retries not included)."""
        return Counter(k for k, again in zip(self.kinds, self.resent, strict=True) if k and not again)


@dataclass
class _Record:
    body: dict[str, Any]
    event_time: datetime  # as encoded in the record (what a reader decodes)
    offset: str  # the client's UTC offset, used by the RFC 3339 encodings
    arrival: datetime = EPOCH
    delay: timedelta = timedelta(0)
    kind: str | None = None
    line: str = ""


class _Catalog:
    """Contents with Zipf popularity, affiliates, and viewers with a home platform."""

    def __init__(self, spec: SimulationSpec, rng: random.Random) -> None:
        types = [t for t, _ in CONTENT_TYPES]
        type_weights = [w for _, w in CONTENT_TYPES]
        self.contents: list[dict[str, Any]] = []
        for n in range(spec.contents):
            content_type = rng.choices(types, type_weights)[0]
            self.contents.append(_content_row(n, content_type, spec.start, rng))
        ranks = list(range(spec.contents))
        rng.shuffle(ranks)  # popularity is unrelated to id or type
        weights = [1.0 / (rank + 1) ** CONTENT_ZIPF_S for rank in ranks]
        self.content_cum = list(itertools.accumulate(weights))
        playable = sum(
            w for w, c in zip(weights, self.contents, strict=True) if c["content_type"] != "article"
        )
        # Articles cannot be played: raise the play rate of playable content so plays stay ~70% of clicks.
        self.play_rate = min(1.0, PLAY_RATE * self.content_cum[-1] / playable) if playable else 0.0

        self.affiliates = [f"aff-{n + 1:03d}" for n in range(spec.affiliates)]
        self.affiliate_cum = list(itertools.accumulate(1.0 / (n + 1) for n in range(spec.affiliates)))

        platforms, platform_weights = list(PLATFORM_WEIGHTS), list(PLATFORM_WEIGHTS.values())
        countries = list(COUNTRIES)
        country_weights = [w for w, _ in COUNTRIES.values()]
        self.users = []
        for _ in range(spec.users):
            country = rng.choices(countries, country_weights)[0]
            self.users.append(
                {
                    "user_id": f"u_{rng.getrandbits(48):012x}",
                    "platform": rng.choices(platforms, platform_weights)[0],
                    "affiliate": self.pick_affiliate(rng),
                    "country": country,
                    "offset": rng.choice(COUNTRIES[country][1]),
                }
            )
        self.user_cum = list(itertools.accumulate(1.0 / (n + 1) ** 0.6 for n in range(spec.users)))

    def pick_content(self, rng: random.Random) -> dict[str, Any]:
        return self.contents[_pick(self.content_cum, rng)]

    def pick_affiliate(self, rng: random.Random) -> str:
        return self.affiliates[_pick(self.affiliate_cum, rng)]

    def pick_user(self, rng: random.Random) -> dict[str, Any]:
        return self.users[_pick(self.user_cum, rng)]


def _pick(cum_weights: list[float], rng: random.Random) -> int:
    return min(bisect.bisect_right(cum_weights, rng.random() * cum_weights[-1]), len(cum_weights) - 1)


def _content_row(n: int, content_type: str, start: datetime, rng: random.Random) -> dict[str, Any]:
    words = rng.sample(TITLE_WORDS, rng.randint(2, 4))
    title = " ".join(words)
    if rng.random() < 0.05:
        title = f"{title}, Part {rng.randint(2, 5)}"
    if content_type == "video":
        duration: int | None = int(min(2400, 120 + rng.lognormvariate(6.0, 0.7)))
    elif content_type == "clip":
        duration = rng.randint(15, 180)
    else:
        duration = None
    published = start - timedelta(seconds=rng.randint(3600, 90 * 86400))
    return {
        "content_id": f"{CONTENT_PREFIX[content_type]}-{n + 1:05d}",
        "title": title,
        "category": rng.choice(CATEGORIES),
        "content_type": content_type,
        "duration_s": duration,
        "publisher": rng.choice(PUBLISHERS),
        "published_at": published.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    variant = "89ab"[int(h[16], 16) % 4]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"


def _session(
    catalog: _Catalog, spec: SimulationSpec, rng: random.Random
) -> tuple[str, list[tuple[datetime, dict[str, Any]]]]:
    """One viewer session: the client's UTC offset and ``(event time, body)`` pairs clipped to the span."""
    user = catalog.pick_user(rng)
    platform = user["platform"] if rng.random() < 0.85 else rng.choice(list(PLATFORM_WEIGHTS))
    affiliate = user["affiliate"] if rng.random() < 0.8 else catalog.pick_affiliate(rng)
    base = {
        "affiliate_id": affiliate,
        "platform": platform,
        "user_id": user["user_id"],
        "session_id": f"s-{rng.getrandbits(64):016x}",
        "placement": rng.choice(PLACEMENTS[platform]),
        "country": user["country"],
        "app_version": rng.choice(APP_VERSIONS[platform]),
    }
    window_us = (spec.span + SESSION_WARMUP) // timedelta(microseconds=1)
    t = spec.start - SESSION_WARMUP + timedelta(microseconds=rng.randrange(window_us))
    out: list[tuple[datetime, dict[str, Any]]] = []

    def emit(at: datetime, event_type: str, content_id: str, watch_ms: int | None = None) -> None:
        body = {"event_type": event_type, "content_id": content_id, **base}
        if watch_ms is not None:
            body["watch_ms"] = watch_ms
        out.append((at, body))

    impressions = 1 + int(rng.expovariate(1.0 / (IMPRESSIONS_PER_SESSION - 1)))
    for _ in range(impressions):
        t += timedelta(seconds=rng.expovariate(1 / 6.0))
        content = catalog.pick_content(rng)
        emit(t, "impression", content["content_id"])
        if rng.random() >= CLICK_RATE:
            continue
        t += timedelta(seconds=rng.uniform(0.8, 8.0))
        emit(t, "click", content["content_id"])
        if content["content_type"] == "article" or rng.random() >= catalog.play_rate:
            continue
        t += timedelta(seconds=rng.uniform(0.3, 3.0))
        emit(t, "play_start", content["content_id"])
        length_ms = content["duration_s"] * 1000
        completes = rng.random() < COMPLETE_RATE
        watched_ms = length_ms if completes else int(length_ms * rng.uniform(0.05, 0.9))
        played = 0
        while True:
            step = int(rng.uniform(*PROGRESS_EVERY_S) * 1000)
            if played + step >= watched_ms:
                break
            stall = rng.randint(0, 1500) if rng.random() < 0.1 else 0  # buffering: wall time, not watch time
            t += timedelta(milliseconds=step + stall)
            played += step
            emit(t, "progress", content["content_id"], step)
        if completes:
            t += timedelta(milliseconds=watched_ms - played)
            emit(t, "complete", content["content_id"], watched_ms - played)
    end = spec.start + spec.span
    return user["offset"], [(at, body) for at, body in out if spec.start <= at < end]


def _encode_time(record: _Record, rng: random.Random) -> None:
    """Put ``event_time`` into the body in one of the client encodings; keep what a reader will decode."""
    t = record.event_time.astimezone(UTC)
    roll = rng.random()
    if roll < 0.20:
        millis = (t - EPOCH) // timedelta(milliseconds=1)
        record.body["event_time"] = millis
        record.event_time = EPOCH + timedelta(milliseconds=millis)
        return
    digits = rng.choice((0, 0, 0, 0, 0, 3, 3, 3, 3, 3, 3, 3, 6, 6, 6, 6, 9, 9, 1, 2, 4, 5, 7, 8))
    fraction = f"{t.microsecond:06d}{rng.randrange(1000):03d}"[:digits]
    decoded = t.replace(microsecond=int(fraction[:6].ljust(6, "0")))
    zone = "Z" if roll < 0.65 else record.offset
    local = decoded if zone == "Z" else decoded.astimezone(_tz(zone))
    record.body["event_time"] = f"{local:%Y-%m-%dT%H:%M:%S}{'.' + fraction if digits else ''}{zone}"
    record.event_time = decoded


def _tz(offset: str) -> timezone:
    sign = -1 if offset[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))


def _dress(record: _Record, rng: random.Random) -> None:
    """Client variety that keeps a record valid: casing, omitted or null optionals, extra fields."""
    body = record.body
    if rng.random() < 0.05:
        body["platform"] = rng.choice(PLATFORM_SPELLINGS[body["platform"]])
    for name, omit in (("session_id", 0.03), ("placement", 0.04), ("country", 0.05), ("app_version", 0.05)):
        roll = rng.random()
        if roll < omit:
            del body[name]
        elif roll < omit + 0.01:
            body[name] = None
    roll = rng.random()
    if roll < 0.30:
        pass  # schema_version omitted: defaults to 1
    else:
        body["schema_version"] = 2 if roll < 0.40 else 1
    if body["event_type"] == "play_start" and rng.random() < 0.03:
        body["watch_ms"] = 0  # ignored for this event type
    elif body["event_type"] == "impression" and rng.random() < 0.01:
        body["watch_ms"] = None
    if rng.random() < 0.04:
        body.update(rng.choice(EXTRA_FIELDS))


def _render(body: dict[str, Any]) -> str:
    order = ("event_id", "event_type", "event_time", "content_id", "affiliate_id", "platform", "user_id",
             "session_id", "placement", "country", "app_version", "watch_ms", "schema_version")
    ordered = {k: body[k] for k in order if k in body}
    ordered.update((k, v) for k, v in body.items() if k not in ordered)
    return json.dumps(ordered, separators=(",", ":"))


def _corrupt(record: _Record, kind: str, now: datetime, rng: random.Random) -> None:
    """Break ``record`` in the way named by ``kind`` (exactly one contract rule) and render it."""
    body = record.body
    if kind == "broken_json":
        text = _render(body)
        if rng.random() < 0.6:
            record.line = text[: rng.randint(len(text) // 2, len(text) - 1)]  # truncated mid-object
        else:
            record.line = text.replace('"', "'")  # single quotes, as a hand-rolled encoder writes
        return
    if kind == "not_an_object":
        choice = rng.randrange(3)
        if choice == 0:
            record.line = json.dumps([body], separators=(",", ":"))
        elif choice == 1:
            record.line = json.dumps(body["event_id"])
        else:
            record.line = str(rng.randint(1, 10**6))
        return
    if kind == "missing_field":
        name = rng.choice(("event_id", "event_type", "event_time", "content_id", "affiliate_id", "platform",
                           "user_id"))
        if rng.random() < 0.7:
            del body[name]
        else:
            body[name] = None
    elif kind == "wrong_type":
        name = rng.choice(("event_id", "content_id", "affiliate_id", "user_id", "platform", "session_id",
                           "schema_version"))
        if name == "schema_version":
            body[name] = "1"
        elif name in {"content_id", "user_id"}:
            body[name] = rng.randint(1, 99_999)
        else:
            body[name] = [body.get(name) or "x"]
    elif kind == "unknown_event_type":
        body["event_type"] = rng.choice(UNKNOWN_EVENT_TYPES)
    elif kind == "unknown_platform":
        body["platform"] = rng.choice(UNKNOWN_PLATFORMS)
    elif kind == "bad_event_time":
        moment = record.event_time
        millis = (moment - EPOCH) // timedelta(milliseconds=1)
        body["event_time"] = rng.choice(BAD_TIME_FORMATS).format(d=moment, ms=millis)
    elif kind == "future_event_time":
        future = _Record({}, now + timedelta(days=1, seconds=rng.randint(0, 3600)), record.offset)
        _encode_time(future, rng)
        body["event_time"] = future.body["event_time"]
    elif kind in {"negative_watch_ms", "missing_watch_ms"}:
        if body["event_type"] not in {"progress", "complete"}:
            body["event_type"] = "progress"  # a heartbeat sent by a faulty player
        if kind == "negative_watch_ms":
            body["watch_ms"] = -rng.randint(1, 30_000)
        elif rng.random() < 0.7:
            body.pop("watch_ms", None)
        else:
            body["watch_ms"] = None
    else:
        raise ValueError(f"unknown malformed kind {kind!r}")
    record.line = _render(body)


def simulate(spec: SimulationSpec) -> Traffic:
    """Generate traffic for ``spec``: lines in arrival order (malformed and resent ones included)."""
    rng = random.Random(spec.seed)
    now = (spec.now or datetime.now(UTC)).astimezone(UTC)
    catalog = _Catalog(spec, rng)

    records: list[_Record] = []
    while len(records) < spec.events:
        offset, events = _session(catalog, spec, rng)
        for moment, body in events[: spec.events - len(records)]:
            records.append(_Record({"event_id": _uuid(rng), **body}, moment, offset))

    limit = spec.out_of_order
    for record in records:
        _encode_time(record, rng)
        _dress(record, rng)
        # Most records arrive within seconds, a few close to the bound.
        record.delay = limit * rng.random() ** 3
        record.arrival = record.event_time + record.delay

    n_malformed = round(spec.malformed * spec.events)
    targets = rng.sample(range(len(records)), n_malformed)
    kinds = [MALFORMED_KINDS[i % len(MALFORMED_KINDS)] for i in range(n_malformed)]
    rng.shuffle(kinds)
    for index, kind in zip(targets, kinds, strict=True):
        records[index].kind = kind
    for record in records:
        if record.kind is None:
            record.line = _render(record.body)
        else:
            _corrupt(record, record.kind, now, rng)

    # (arrival, order, record, resent): a retry repeats the line later, within 60 s and within the bound.
    queue: list[tuple[datetime, int, _Record, bool]] = [
        (r.arrival, i, r, False) for i, r in enumerate(records)
    ]
    n_resent = round(spec.duplicates * spec.events)
    for j, index in enumerate(sorted(rng.sample(range(len(records)), n_resent))):
        record = records[index]
        room = min(MAX_RETRY_DELAY, limit - record.delay)
        queue.append((record.arrival + room * rng.random(), len(records) + j, record, True))
    queue.sort(key=lambda item: (item[0], item[1]))

    return Traffic(
        lines=[record.line for _, _, record, _ in queue],
        content_rows=_dimension_rows(catalog, records, spec.missing_content, rng),
        arrivals=[arrival for arrival, _, _, _ in queue],
        kinds=[record.kind for _, _, record, _ in queue],
        resent=[resent for _, _, _, resent in queue],
        now=now,
    )


def _dimension_rows(
    catalog: _Catalog, records: list[_Record], missing_rate: float, rng: random.Random
) -> list[dict[str, Any]]:
    """The catalogue minus a ``missing_rate`` share of the content ids that valid events use."""
    used = list(dict.fromkeys(r.body["content_id"] for r in records if r.kind is None))
    missing = set(rng.sample(used, round(missing_rate * len(used))))
    return [dict(row) for row in catalog.contents if row["content_id"] not in missing]


def write_files(traffic: Traffic, out_dir: Path, spec: SimulationSpec) -> list[Path]:
    """Write the lines in arrival order as Firehose-style deliveries under ``out_dir``; return the paths.

    File ``n`` goes to ``YYYY/MM/DD/HH/mediapulse-<n>-<yyyy-mm-dd-hh-mm-ss>.json[.gz]``, named after the
    arrival time of its first line, so paths sort in arrival order. Every other file is gzipped when
    ``spec.gzip``. A few blank lines (not records) are inserted. Each file appears atomically (written
    under a hidden name, then renamed) and modification times increase with ``n``.
    """
    lines = traffic.lines
    count = min(spec.files, len(lines))
    bounds = [i * len(lines) // count for i in range(count + 1)]
    chunks = [lines[bounds[i] : bounds[i + 1]] for i in range(count)]
    rng = random.Random(f"{spec.seed}/files")
    for _ in range(max(1, count // 4)):
        chunk = chunks[rng.randrange(count)]
        chunk.insert(rng.randint(0, len(chunk)), "")

    width = max(4, len(str(count)))
    first_mtime_ns = time.time_ns()
    paths: list[Path] = []
    for i, chunk in enumerate(chunks):
        first = traffic.arrivals[bounds[i]].astimezone(UTC)
        compressed = spec.gzip and i % 2 == 1
        name = f"mediapulse-{i + 1:0{width}d}-{first:%Y-%m-%d-%H-%M-%S}.json" + (".gz" if compressed else "")
        path = out_dir / f"{first:%Y}" / f"{first:%m}" / f"{first:%d}" / f"{first:%H}" / name
        data = ("\n".join(chunk) + "\n").encode("utf-8")
        if compressed:
            data = gzip.compress(data, mtime=0)
        _write_atomically(path, data)
        mtime_ns = first_mtime_ns + i * 1_000_000
        os.utime(path, ns=(mtime_ns, mtime_ns))
        paths.append(path)
    return paths


def write_dimension(traffic: Traffic, path: Path) -> None:
    """Write the content dimension: Parquet when ``path`` ends in ``.parquet``, else CSV with a header."""
    rows = traffic.content_rows
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema(
            [
                ("content_id", pa.string()),
                ("title", pa.string()),
                ("category", pa.string()),
                ("content_type", pa.string()),
                ("duration_s", pa.int32()),
                ("publisher", pa.string()),
                ("published_at", pa.timestamp("us", tz="UTC")),
            ]
        )
        columns = {name: [row[name] for row in rows] for name in CONTENT_COLUMNS}
        columns["published_at"] = [
            datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            for value in columns["published_at"]
        ]
        table = pa.Table.from_pydict(columns, schema=schema)
        tmp = path.with_name(f".{path.name}.tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp)
        tmp.replace(path)
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CONTENT_COLUMNS)
    for row in rows:
        writer.writerow(["" if row[name] is None else row[name] for name in CONTENT_COLUMNS])
    _write_atomically(path, buffer.getvalue().encode("utf-8"))


def _write_atomically(path: Path, data: bytes) -> None:
    """Write under a hidden temporary name (ignored by Spark's file source), then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def default_dimension_path(out: Path | None) -> Path:
    """``<out>/../dimensions/content.csv``; ``data/dimensions/content.csv`` when there is no ``--out``."""
    if out is None:
        return Path("data/dimensions/content.csv")
    return Path(os.path.normpath(out / ".." / "dimensions" / "content.csv"))


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a rate in [0, 1), got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mediapulse simulate``."""
    spec = SimulationSpec
    parser.add_argument(
        "--to", choices=("files", "kinesis"), default="files",
        help="write Firehose-style files under --out (default), or put the records on a Kinesis stream",
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR",
        help="root folder of the event files, e.g. data/incoming (required with --to files)",
    )
    parser.add_argument("--events", type=_positive_int, default=spec.events, metavar="N",
                        help=f"records to generate before retries (default {spec.events})")
    parser.add_argument("--seed", type=int, default=spec.seed, metavar="S",
                        help=f"random seed; the same seed gives the same traffic (default {spec.seed})")
    parser.add_argument("--duplicates", type=_rate, default=spec.duplicates, metavar="RATE",
                        help=f"share of records re-sent as client retries, in [0, 1) "
                        f"(default {spec.duplicates})")
    parser.add_argument("--malformed", type=_rate, default=spec.malformed, metavar="RATE",
                        help=f"share of records that break the contract, in [0, 1) "
                        f"(default {spec.malformed})")
    parser.add_argument("--contents", type=_positive_int, default=spec.contents, metavar="N",
                        help=f"content catalogue size (default {spec.contents})")
    parser.add_argument("--affiliates", type=_positive_int, default=spec.affiliates, metavar="N",
                        help=f"number of affiliates (default {spec.affiliates})")
    parser.add_argument("--users", type=_positive_int, default=spec.users, metavar="N",
                        help=f"number of viewers (default {spec.users})")
    parser.add_argument("--files", type=_positive_int, default=spec.files, metavar="N",
                        help=f"number of files to split the lines into (default {spec.files})")
    parser.add_argument("--no-gzip", dest="gzip", action="store_false",
                        help="write every file as plain .json (default: every other file is .json.gz)")
    parser.add_argument(
        "--dimension", type=Path, metavar="PATH",
        help="content dimension to write, .csv or .parquet (default <out>/../dimensions/content.csv, "
        "i.e. data/dimensions/content.csv for --out data/incoming; that path also without --out)",
    )
    parser.add_argument("--stream", metavar="NAME", help="Kinesis stream name (required with --to kinesis)")
    parser.add_argument("--endpoint", metavar="URL",
                        help="Kinesis endpoint URL, e.g. a local Kinesis-API server")
    parser.add_argument("--region", metavar="REGION", help="AWS region (default: from the environment)")
    parser.add_argument("--rate", type=_positive_float, metavar="PER_SECOND",
                        help="records per second to put on the stream (default: as fast as accepted)")


def run(args: argparse.Namespace) -> int:
    """Simulate traffic and write it out (files or Kinesis) together with the content dimension."""
    if args.to == "files" and args.out is None:
        raise argparse.ArgumentError(None, "--out DIR is required with --to files (e.g. --out data/incoming)")
    if args.to == "kinesis" and not args.stream:
        raise argparse.ArgumentError(None, "--stream NAME is required with --to kinesis")
    try:
        spec = SimulationSpec(
            events=args.events, seed=args.seed, duplicates=args.duplicates, malformed=args.malformed,
            contents=args.contents, affiliates=args.affiliates, users=args.users, files=args.files,
            gzip=args.gzip,
        )
    except ValueError as e:
        raise argparse.ArgumentError(None, str(e)) from e

    traffic = simulate(spec)
    dimension = args.dimension or default_dimension_path(args.out)
    write_dimension(traffic, dimension)
    if args.to == "kinesis":
        from devtools.producer import send_lines

        send_lines(traffic.lines, stream=args.stream, endpoint_url=args.endpoint, rate=args.rate,
                   region=args.region)
        target = f"Kinesis stream {args.stream}"
    else:
        if args.out.is_dir() and any(args.out.iterdir()):
            logger.warning("%s is not empty; earlier files there will be read together with these", args.out)
        paths = write_files(traffic, args.out, spec)
        target = f"{len(paths)} files under {args.out}"
    logger.info(
        "simulated %d lines (%d duplicates, %d malformed) to %s; dimension %s (%d contents)",
        len(traffic.lines), traffic.duplicates, sum(traffic.malformed.values()), target, dimension,
        len(traffic.content_rows),
    )
    return 0
