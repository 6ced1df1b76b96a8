"""The layout of ``checkpoint.path``: which query keeps its checkpoint where, and a marker naming it.

Layout 3 (this version)::

    <checkpoint>/LAYOUT        "mediapulse-checkpoints 3"
    <checkpoint>/ingest/       the one query that reads the source
    <checkpoint>/records/      its output: validated records (Spark's file sink, with _spark_metadata)
    <checkpoint>/events/       records -> the lake's event log and quarantine
    <checkpoint>/engagement/   records -> windows -> the lake's engagement table and the warehouse
    <checkpoint>/viewers/      records -> daily unique-viewer rollups -> the warehouse

Layout 2 had the same queries but ``viewers``, and its ``engagement`` state held a second event-id
deduplication that this version's plan does not have: Spark cannot resume it, so it is refused.
Layout 1 (earlier versions) had two queries, ``ingest`` and ``engagement``, each reading the source; its
``engagement`` checkpoint holds source offsets that this version would misread, so it is refused.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from pyspark.sql import SparkSession

from streaming.storage import hadoop_path, path_exists, read_text, write_text

LAYOUT_VERSION = 3
MARKER = "LAYOUT"
_MARKER_HEADER = f"mediapulse-checkpoints {LAYOUT_VERSION}"

INGEST = "ingest"
EVENTS = "events"
ENGAGEMENT = "engagement"
VIEWERS = "viewers"
# The queries that read the validated records.
RECORD_READERS = (EVENTS, ENGAGEMENT, VIEWERS)
RECORDS = "records"


class CheckpointLayoutError(ValueError):
    """``checkpoint.path`` holds checkpoints this version cannot resume."""


def checkpoint_dir(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}"


def ensure_layout(spark: SparkSession, root: str) -> str:
    """Accept a checkpoint folder of this layout or an empty one (and mark it); refuse any other.

    Returns the folder's identity, made when it was first marked: the warehouse ledger keys its batches
    by it, so a new (reset) checkpoint, whose batch ids start again at 0, is never taken for the old one.
    """
    marker = checkpoint_dir(root, MARKER)
    text = read_text(spark, marker)
    if text is not None:
        header, _, rest = text.partition("\n")
        identity = rest.removeprefix("id ").strip()
        if header.strip() != _MARKER_HEADER or not identity.isalnum():
            raise CheckpointLayoutError(
                f"checkpoint.path {root!r} is marked {header.strip()!r}, not {_MARKER_HEADER!r}: it was "
                "written by another version of mediapulse; run that version, or point checkpoint.path at a "
                "new folder"
            )
        return identity
    earlier = [name for name in (INGEST, ENGAGEMENT) if path_exists(spark, checkpoint_dir(root, name))]
    if earlier:
        raise CheckpointLayoutError(
            f"checkpoint.path {root!r} holds checkpoints of an earlier mediapulse ({', '.join(earlier)}/, "
            "no LAYOUT marker), in which two queries read the source; this version reads it once "
            "(ingest -> records -> events, engagement) and cannot resume them. Drain the backlog with the "
            "earlier version (run --available-now), then start this one with a new checkpoint.path and "
            "a source that holds only new records (a new checkpoint reads the source from its start "
            "position again)"
        )
    identity = uuid.uuid4().hex[:12]
    write_text(spark, marker, f"{_MARKER_HEADER}\nid {identity}\n")
    return identity


def ledger_name(query: str, identity: str) -> str:
    """The name a query's batches carry in the warehouse ledger: the query and its checkpoint's identity."""
    return f"{query}_{identity}"


def _latest_planned(spark: SparkSession, query_dir: str) -> int | None:
    """When the query's latest committed batch was planned (ms since epoch), or None before any commit."""
    commits, fs = hadoop_path(spark, f"{query_dir}/commits")
    if not fs.exists(commits):
        return None
    batches = [int(s.getPath().getName()) for s in fs.listStatus(commits) if s.getPath().getName().isdigit()]
    if not batches:
        return None
    offsets, _ = hadoop_path(spark, f"{query_dir}/offsets/{max(batches)}")
    return int(fs.getFileStatus(offsets).getModificationTime())


def purge_consumed_records(spark: SparkSession, root: str, retention: timedelta) -> list[str]:
    """Delete record files every reader has committed and that are older than ``retention``.

    Each reader takes every committed record file at planning time (no admission bound), so a file
    committed before a reader planned its latest committed batch has been read by it. A file's own
    time precedes its batch's commit by at most the batch's duration, which ``retention`` must exceed.
    """
    planned = [_latest_planned(spark, checkpoint_dir(root, name)) for name in RECORD_READERS]
    if any(p is None for p in planned):
        return []
    cutoff = min(p for p in planned if p is not None) - int(retention.total_seconds() * 1000)
    records, fs = hadoop_path(spark, checkpoint_dir(root, RECORDS))
    if not fs.exists(records):
        return []
    removed = []
    for status in fs.listStatus(records):
        name = status.getPath().getName()
        if status.isFile() and name.endswith(".parquet") and status.getModificationTime() < cutoff:
            fs.delete(status.getPath(), False)
            removed.append(name)
    return removed
