"""Read a running pipeline's Spark checkpoint logs (plain files) to follow each source file downstream.

Nothing here opens the warehouse or talks to the app: Spark's own logs say which batch admitted which
file and when each batch committed. Per query checkpoint ``<ckpt>/<query>/``:

* ``offsets/<b>``: written when micro-batch ``b`` is planned; after a ``v1`` line and the batch
  metadata, one line per source, for a file source ``{"logOffset": n}``;
* ``commits/<b>``: written when the batch's sink is done (its mtime is the commit time);
* ``sources/0/<n>`` (or ``<n>.compact``): the file source's log, one JSON line per admitted file with
  ``path``, ``timestamp`` and ``batchId`` (= the log offset ``n``, not the micro-batch id: a micro-batch
  without new files, e.g. one that only advances the watermark, adds no entry).

Two pipeline layouts are understood, told apart by ``<ckpt>/records/_spark_metadata``:

* one reader (layout 2): ``ingest`` reads the source and writes ``<ckpt>/records/`` with Spark's file
  sink, whose ``_spark_metadata/<b>`` lists the files of ingest micro-batch ``b``; ``events`` and
  ``engagement`` read those files. A source file's rows are in the warehouse when the engagement
  batches that read every records file of its ingest batch have committed.
* two readers (layout 1): ``ingest`` and ``engagement`` each read the source files.

Log files are immutable once written (Spark writes a temporary file and renames it) but may be deleted
later (compaction, retention), so :class:`CheckpointLogs` reads each one once, as it appears.
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

INGEST, EVENTS, ENGAGEMENT, RECORDS = "ingest", "events", "engagement", "records"


def normalize(path: str) -> str:
    """A file path as Spark logs it (``file:///a%20b``) or as the OS gives it, in one comparable form."""
    if "://" in path or path.startswith("file:"):
        path = unquote(urlparse(path).path)
    return os.path.normpath(path)


def _log_id(name: str) -> int | None:
    """Batch id of a log file name (``7`` or ``9.compact``); None for temporary or checksum files."""
    stem = name.removesuffix(".compact")
    return int(stem) if stem.isdigit() else None


def _entries(text: str) -> list[dict]:
    """The JSON lines of a metadata log file after its version line."""
    return [json.loads(line) for line in text.splitlines()[1:] if line.strip().startswith("{")]


@dataclass
class QueryLog:
    """What one query's checkpoint says so far."""

    offsets: dict[int, tuple[float, int | None]] = field(default_factory=dict)  # batch -> (mtime, log offset)
    commits: dict[int, float] = field(default_factory=dict)  # batch -> mtime
    source_files: dict[str, int] = field(default_factory=dict)  # normalized path -> source log offset

    def batch_reading(self, log_offset: int) -> int | None:
        """The micro-batch that read source log entry ``log_offset`` (first batch whose offset reaches it)."""
        planned = sorted((b, o) for b, (_, o) in self.offsets.items() if o is not None)
        index = bisect.bisect_left([o for _, o in planned], log_offset)
        return planned[index][0] if index < len(planned) else None

    def committed(self, path: str) -> float | None:
        """When the batch that read source file ``path`` committed (None: not yet)."""
        offset = self.source_files.get(path)
        batch = None if offset is None else self.batch_reading(offset)
        return None if batch is None else self.commits.get(batch)

    def batch_of(self, path: str) -> int | None:
        offset = self.source_files.get(path)
        return None if offset is None else self.batch_reading(offset)

    def durations(self) -> dict[int, tuple[float, float]]:
        """batch -> (planned, committed) times, for committed batches."""
        return {b: (self.offsets[b][0], t) for b, t in self.commits.items() if b in self.offsets}


class CheckpointLogs:
    """The checkpoint logs under ``root``, read incrementally by :meth:`poll`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.queries: dict[str, QueryLog] = {}
        self._sink_logs: dict[int, tuple[bool, frozenset[str]]] = {}  # records batch -> (compact, paths)
        self._read: set[str] = set()

    @property
    def one_reader(self) -> bool:
        """Layout 2: the ingest query writes ``records/`` and the other queries read it."""
        return (self.root / RECORDS / "_spark_metadata").is_dir()

    def _new_files(self, folder: Path) -> Iterable[tuple[int, Path, float, str]]:
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return
        for name in names:
            batch = _log_id(name)
            path = folder / name
            if batch is None or str(path) in self._read:
                continue
            try:
                mtime = path.stat().st_mtime
                text = path.read_text()
            except FileNotFoundError:  # deleted by compaction or retention since the listing
                continue
            self._read.add(str(path))
            yield batch, path, mtime, text

    def poll(self) -> None:
        """Read every log file that appeared since the last poll."""
        try:
            folders = sorted(
                p for p in self.root.iterdir() if (p / "offsets").is_dir() or (p / "commits").is_dir()
            )
        except FileNotFoundError:
            return
        for folder in folders:
            q = self.queries.setdefault(folder.name, QueryLog())
            for batch, _, mtime, text in self._new_files(folder / "offsets"):
                lines = text.splitlines()
                source0 = json.loads(lines[2]) if len(lines) > 2 and lines[2].startswith("{") else {}
                q.offsets[batch] = (mtime, source0.get("logOffset"))
            for batch, _, mtime, _ in self._new_files(folder / "commits"):
                q.commits[batch] = mtime
            for _, _, _, text in self._new_files(folder / "sources" / "0"):
                for entry in _entries(text):
                    q.source_files.setdefault(normalize(entry["path"]), int(entry["batchId"]))
        for batch, path, _, text in self._new_files(self.root / RECORDS / "_spark_metadata"):
            added = frozenset(normalize(e["path"]) for e in _entries(text) if e.get("action", "add") == "add")
            self._sink_logs[batch] = (path.name.endswith(".compact"), added)

    def records_of(self, ingest_batch: int) -> frozenset[str] | None:
        """Files of ``records/`` written by ingest micro-batch ``ingest_batch`` (None: not committed yet).

        A compacted log file holds every file up to its batch; the batch's own are those no earlier
        batch listed.
        """
        if ingest_batch not in self._sink_logs:
            return None
        compact, paths = self._sink_logs[ingest_batch]
        if not compact:
            return paths
        earlier: set[str] = set()
        for batch, (_, files) in self._sink_logs.items():
            if batch < ingest_batch:
                earlier |= files
        return paths - earlier

    def lineage(self, source_file: str) -> Lineage:
        """When ``source_file``'s rows were committed by each stage (None where not yet)."""
        path = normalize(source_file)
        ingest = self.queries.get(INGEST, QueryLog())
        admitted = ingest.committed(path)
        if not self.one_reader:
            engagement = self.queries.get(ENGAGEMENT, QueryLog())
            return Lineage(admitted, admitted, engagement.committed(path))
        batch = ingest.batch_of(path)
        records = None if batch is None or admitted is None else self.records_of(batch)
        if records is None:
            return Lineage(admitted, None, None)
        if not records:  # the batch wrote no records file: nothing to aggregate
            return Lineage(admitted, admitted, admitted)

        def consumed(query: str) -> float | None:
            log = self.queries.get(query, QueryLog())
            times = [log.committed(r) for r in records]
            return None if None in times else max(t for t in times if t is not None)

        return Lineage(admitted, consumed(EVENTS), consumed(ENGAGEMENT))


@dataclass(frozen=True)
class Lineage:
    """When one source file's rows were committed (epoch s): validated, in the event log, in the warehouse."""

    ingested: float | None
    event_log: float | None
    warehouse: float | None
