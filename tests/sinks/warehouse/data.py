"""Engagement rows for warehouse tests: Parquet files written with pyarrow (no Spark), and plain-Python
expectations computed from the same rows, independently of the code under test."""

from __future__ import annotations

import io
import random
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sinks.warehouse.base import COLUMN_NAMES, DAILY, KEY, TARGET, StagedBatch
from streaming.sources.content_dim import arrow_schema

Row = dict[str, Any]

# The staged files' schema: the warehouse's engagement columns as Spark writes them.
ENGAGEMENT_SCHEMA = TARGET.arrow_schema()
DAILY_SCHEMA = DAILY.arrow_schema()
WINDOW = timedelta(minutes=5)
T0 = datetime(2026, 11, 2, 12, 0, 0)  # naive UTC, as the warehouse returns it

PLATFORMS = ("web", "ios", "android", "tv")
CONTENT_TYPES = ("video", "article", "podcast")


def make_rows(
    batch_id: int,
    contents: Sequence[str] = ("c1", "c2", "c3"),
    affiliates: Sequence[str] = ("a1", "a2"),
    windows: int = 2,
    seed: int = 0,
    platforms: Sequence[str] = ("web", "ios"),
    placements: Sequence[str] = ("home_hero",),
) -> list[Row]:
    """One row per (window, content, affiliate, placement, platform), full aggregate values, deterministic
    per seed.

    A metric or rate of the table that this function does not know yet gets a random value of its type."""
    rng = random.Random(seed * 7919 + batch_id)
    rows = []
    for w in range(windows):
        start = T0 + w * WINDOW
        for i, content in enumerate(contents):
            for affiliate, placement in ((a, p) for a in affiliates for p in placements):
                for platform in platforms:
                    impressions = rng.randint(10, 500)
                    clicks = rng.randint(0, impressions)
                    plays = rng.randint(0, clicks)
                    completions = rng.randint(0, plays)
                    rows.append(
                        {
                            "window_start": start,
                            "window_end": start + WINDOW,
                            "content_id": content,
                            "affiliate_id": affiliate,
                            "placement": placement,
                            "platform": platform,
                            "title": f"Title of {content}" if i % 3 else "",
                            "category": None if i % 4 == 3 else f"cat-{i % 2}",
                            "content_type": CONTENT_TYPES[i % len(CONTENT_TYPES)],
                            "duration_s": None if i % 5 == 4 else 60 * (i + 1),
                            "impressions": impressions,
                            "clicks": clicks,
                            "play_starts": plays,
                            "completions": completions,
                            "watch_time_ms": plays * rng.randint(1_000, 600_000),
                            "unique_viewers": rng.randint(1, impressions),
                            "last_event_time": start + WINDOW - timedelta(seconds=1),
                            "ctr": clicks / impressions,
                            "play_rate": plays / impressions,
                            "completion_rate": completions / plays if plays else None,
                            "updated_at": start + WINDOW + timedelta(seconds=batch_id),
                            "batch_id": batch_id,
                        }
                    )
                    for column in TARGET.columns:
                        if column.name not in rows[-1]:
                            rows[-1][column.name] = _any_value(column.type, rng)
    return rows


def _any_value(kind: str, rng: random.Random) -> Any:
    return rng.random() if kind == "double" else rng.randint(0, 1_000)


def arrow_table(rows: Iterable[Row]) -> pa.Table:
    """``rows`` in :data:`ENGAGEMENT_SCHEMA` (naive datetimes are UTC)."""
    return _table(list(rows), ENGAGEMENT_SCHEMA)


def _table(rows: list[Row], schema: pa.Schema) -> pa.Table:
    columns = {}
    for field in schema:
        values = [r[field.name] for r in rows]
        if pa.types.is_timestamp(field.type):
            values = [v.replace(tzinfo=None) if v is not None else None for v in values]
            columns[field.name] = pa.array(values, pa.timestamp("us")).cast(field.type)
        else:
            columns[field.name] = pa.array(values, field.type)
    return pa.Table.from_pydict(columns, schema=schema)


def daily_rows(
    batch_id: int, day: datetime, keys: Sequence[tuple[str, str, str, str]], seed: int = 0
) -> list[Row]:
    """Daily unique-viewer rows of ``day`` for ``keys`` (content, affiliate, placement, platform)."""
    rng = random.Random(seed * 104729 + batch_id)
    names = ("content_id", "affiliate_id", "placement", "platform")
    return [
        {
            "day": day,
            **dict(zip(names, key, strict=True)),
            "unique_viewers": rng.randint(1, 5_000),
            "updated_at": day + timedelta(hours=1, seconds=batch_id),
            "batch_id": batch_id,
        }
        for key in keys
    ]


def write_local_batch(
    directory: Path,
    query: str,
    batch_id: int,
    parts: Sequence[Sequence[Row]],
    viewers: Sequence[Row] = (),
    watermark: datetime | None = None,
) -> StagedBatch:
    """Each element of ``parts`` becomes one Parquet file, as Spark would write partitions; ``viewers``
    (daily unique-viewer rows) one more file of their own."""
    uri = directory / query / f"batch_id={batch_id}"
    uri.mkdir(parents=True, exist_ok=True)
    files = []
    for n, part in enumerate(parts):
        path = uri / f"part-{n:05d}.snappy.parquet"
        pq.write_table(arrow_table(part), path)
        files.append(str(path))
    viewer_files: tuple[str, ...] = ()
    if viewers:
        path = uri / "viewers-00000.snappy.parquet"
        pq.write_table(_table(list(viewers), DAILY_SCHEMA), path)
        viewer_files = (str(path),)
    return StagedBatch(
        query, batch_id, str(uri), tuple(files), sum(len(p) for p in parts), viewer_files, watermark
    )


def write_s3_batch(
    s3: Any,
    bucket: str,
    prefix: str,
    query: str,
    batch_id: int,
    parts: Sequence[Sequence[Row]],
    viewers: Sequence[Row] = (),
) -> StagedBatch:
    key_prefix = f"{prefix}/{query}/batch_id={batch_id}"
    files = []
    for n, part in enumerate(parts):
        sink = io.BytesIO()
        pq.write_table(arrow_table(part), sink)
        key = f"{key_prefix}/part-{n:05d}.snappy.parquet"
        s3.put_object(Bucket=bucket, Key=key, Body=sink.getvalue())
        files.append(f"s3://{bucket}/{key}")
    viewer_files: tuple[str, ...] = ()
    if viewers:
        sink = io.BytesIO()
        pq.write_table(_table(list(viewers), DAILY_SCHEMA), sink)
        key = f"{key_prefix}/viewers/part-00000.snappy.parquet"
        s3.put_object(Bucket=bucket, Key=key, Body=sink.getvalue())
        viewer_files = (f"s3://{bucket}/{key}",)
    s3.put_object(Bucket=bucket, Key=f"{key_prefix}/_SUCCESS", Body=b"")
    return StagedBatch(
        query,
        batch_id,
        f"s3://{bucket}/{key_prefix}",
        tuple(files),
        sum(len(p) for p in parts),
        viewer_files,
    )


def key_of(row: Row) -> tuple[Any, ...]:
    return tuple(row[k] for k in KEY)


def apply_batches(batches: Iterable[Sequence[Row]]) -> dict[tuple[Any, ...], Row]:
    """What the target must hold: later batches replace rows by key; within a batch the newest wins."""
    state: dict[tuple[Any, ...], Row] = {}
    for rows in batches:
        newest: dict[tuple[Any, ...], Row] = {}
        for row in rows:
            key = key_of(row)
            if key not in newest or (row["updated_at"], row["batch_id"]) > (
                newest[key]["updated_at"],
                newest[key]["batch_id"],
            ):
                newest[key] = row
        state.update(newest)
    return state


def as_tuples(state: dict[tuple[Any, ...], Row]) -> list[tuple[Any, ...]]:
    """Rows in column order, sorted by key (the order of ``SELECT … ORDER BY`` the key)."""
    return [tuple(state[key][c] for c in COLUMN_NAMES) for key in sorted(state)]


def totals(rows: Iterable[Row]) -> dict[str, int]:
    rows = list(rows)
    return {m: sum(r[m] for r in rows) for m in ("impressions", "clicks", "play_starts", "completions")}


CONTENT_DIM_ARROW = arrow_schema()


def dim_rows(n: int) -> list[Row]:
    return [
        {
            "content_id": f"c{i}",
            "title": f'Title {i}, "quoted"' if i % 2 else "",
            "category": None if i % 3 == 0 else f"cat-{i % 2}",
            "content_type": CONTENT_TYPES[i % len(CONTENT_TYPES)],
            "duration_s": 60 * i,
            "publisher": "pub",
            "published_at": T0 - timedelta(days=i),
        }
        for i in range(1, n + 1)
    ]


def dim_table(rows: Sequence[Row]) -> pa.Table:
    return _table(list(rows), CONTENT_DIM_ARROW)
