"""Warehouse sink: stage the batch as Parquet, then apply it through the warehouse's load protocol."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pyspark.sql import DataFrame

from sinks.base import SinkError
from sinks.warehouse.base import COLUMN_NAMES, StagedBatch, Warehouse

log = logging.getLogger(__name__)


def _remove_local(uri: str) -> None:
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        shutil.rmtree(Path(parsed.path if parsed.scheme else uri), ignore_errors=True)


@dataclass(frozen=True)
class WarehouseSink:
    """Upserts each batch of engagement rows into the warehouse exactly once (ledger per query/batch)."""

    name: str
    query: str
    staging_path: str
    open_warehouse: Callable[[], Warehouse]

    def stage(self, batch: DataFrame, batch_id: int) -> StagedBatch:
        uri = f"{self.staging_path.rstrip('/')}/{self.query}/batch_id={batch_id}"
        rows = batch.select(*COLUMN_NAMES)
        rows.coalesce(1).write.mode("overwrite").parquet(uri)
        files = tuple(sorted(rows.sparkSession.read.parquet(uri).inputFiles()))
        return StagedBatch(query=self.query, batch_id=batch_id, uri=uri, files=files, rows=batch.count())

    def write(self, batch: DataFrame, batch_id: int) -> None:
        staged = self.stage(batch, batch_id)
        try:
            with self.open_warehouse() as warehouse:
                applied = warehouse.load_batch(staged)
        except Exception as e:
            raise SinkError(f"warehouse sink failed on {self.query} batch {batch_id}: {e}") from e
        if not applied:
            log.info("%s batch %d already in the warehouse ledger; skipped", self.query, batch_id)
        _remove_local(staged.uri)
