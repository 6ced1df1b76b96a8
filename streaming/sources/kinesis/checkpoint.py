"""What the Kinesis source reads from, and writes to, the checkpoint of the query that consumes it.

* ``source-implementation``: which implementation wrote the checkpoint's offsets (theirs are not
  interchangeable, so a run with the other one is refused).
* The pinned start of ``LATEST``: every offset the Python source hands Spark carries the time ``LATEST``
  was pinned to (``startTimestampMs``), so a restart takes it back from Spark's offset log instead of
  pinning a new time. Batch 0 starts at that time; replaying it with a later one would miss its first
  records and find records past its end.

Everything goes through the same Hadoop file system as Spark's own checkpoint, so local paths,
``s3://`` on EMR, ``s3a://`` and HDFS all work.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pyspark.sql import SparkSession

from streaming.sources.kinesis.errors import ImplementationMismatchError, KinesisSourceError
from streaming.sources.kinesis.offsets import OFFSET_VERSION
from streaming.storage import hadoop_path, read_text

logger = logging.getLogger(__name__)

MARKER_FILE = "source-implementation"
OFFSETS_DIR = "offsets"  # Spark's offset log: one file per planned batch, named by its batch id


def _hadoop_path(spark: SparkSession, path: str) -> tuple[Any, Any]:
    """A Hadoop ``Path`` and its ``FileSystem``: the same storage Spark writes the checkpoint to."""
    try:
        return hadoop_path(spark, path)
    except RuntimeError as e:
        raise KinesisSourceError(str(e)) from e


def planned_batches(spark: SparkSession, checkpoint_path: str) -> list[int]:
    """The batch ids in the checkpoint's offset log, in order (empty before the first batch is planned)."""
    offsets, fs = _hadoop_path(spark, f"{checkpoint_path.rstrip('/')}/{OFFSETS_DIR}")
    if not fs.exists(offsets):
        return []
    names = [status.getPath().getName() for status in fs.listStatus(offsets)]
    return sorted(int(name) for name in names if name.isdigit())


def claim_checkpoint(spark: SparkSession, checkpoint_path: str, implementation: str) -> None:
    """Record ``implementation`` in the query's checkpoint, refusing one that another implementation wrote.

    A marker for the other implementation in a checkpoint that has no offsets yet is simply replaced.
    """
    jvm = spark._jvm
    root, fs = _hadoop_path(spark, checkpoint_path)
    marker = jvm.org.apache.hadoop.fs.Path(root, MARKER_FILE)
    has_offsets = bool(planned_batches(spark, checkpoint_path))
    if fs.exists(marker):
        stream = fs.open(marker)
        try:
            found = str(jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")).strip()
        finally:
            stream.close()
        if found == implementation:
            return
        if has_offsets:
            raise ImplementationMismatchError(
                f"checkpoint {checkpoint_path} was written by the {found!r} Kinesis source, but this run "
                f"uses {implementation!r}; their offsets are not interchangeable. Set "
                f"source.implementation={found}, or start a new checkpoint location."
            )
    elif has_offsets:
        raise ImplementationMismatchError(
            f"checkpoint {checkpoint_path} holds offsets but no {MARKER_FILE} marker: it was not written by "
            "a Kinesis source of this version. Start a new checkpoint location for the Kinesis source."
        )
    fs.mkdirs(root)
    out = fs.create(marker, True)
    try:
        out.write(f"{implementation}\n".encode())
    finally:
        out.close()
    logger.info("kinesis: checkpoint %s claimed by the %s implementation", checkpoint_path, implementation)


def source_offset(log_entry: str) -> dict[str, Any] | None:
    """The Python source's offset in one file of Spark's offset log, or ``None`` if it holds none.

    The file is ``v1``, a line of batch metadata, then one line per source of the query (``-`` for a
    source without an offset); the ingest query has one source.
    """
    lines = log_entry.splitlines()
    if len(lines) < 3 or not lines[0].startswith("v"):
        return None
    try:
        raw = json.loads(lines[2])
    except ValueError:
        return None
    if isinstance(raw, dict) and raw.get("version") == OFFSET_VERSION and "shards" in raw:
        return raw
    return None  # another source's offset (the connector's); claim_checkpoint names that mismatch


def pinned_start_ms(spark: SparkSession, checkpoint_path: str) -> int | None:
    """The time ``LATEST`` was pinned to when this checkpoint's first batch was planned, or ``None``
    when no batch has been planned yet (nothing was read, so a new pin loses nothing)."""
    batches = planned_batches(spark, checkpoint_path)
    if not batches:
        return None
    # Every offset carries the pinned time; the oldest entry Spark still keeps is as good as batch 0's.
    text = read_text(spark, f"{checkpoint_path.rstrip('/')}/{OFFSETS_DIR}/{batches[0]}")
    offset = source_offset(text or "")
    if offset is None or offset.get("startTimestampMs") is None:
        return None
    return int(offset["startTimestampMs"])
