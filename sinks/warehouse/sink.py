"""Warehouse sink: stage the batch as Parquet, then apply it through the warehouse's load protocol."""

from __future__ import annotations

import contextlib
import logging
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pyspark.sql import DataFrame

from sinks.base import PermanentSinkError, SinkError
from sinks.warehouse.base import COLUMN_NAMES, RejectedRowsError, StagedBatch, Warehouse

log = logging.getLogger(__name__)


def _remove_local(uri: str) -> None:
    """Remove a local attempt folder, and its batch folder once no other attempt is left in it."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        attempt = Path(parsed.path if parsed.scheme else uri)
        shutil.rmtree(attempt, ignore_errors=True)
        with contextlib.suppress(OSError):  # another attempt is still there
            attempt.parent.rmdir()


@dataclass(frozen=True)
class WarehouseSink:
    """Upserts each batch of engagement rows into the warehouse exactly once (ledger per query/batch)."""

    name: str
    query: str
    staging_path: str
    open_warehouse: Callable[[], Warehouse]

    def stage(self, batch: DataFrame, batch_id: int) -> StagedBatch:
        """Write the batch as Parquet under a prefix of this attempt's own: a replay, or a second driver
        working on the same batch, never overwrites (or deletes) the files another attempt loads."""
        attempt = uuid.uuid4().hex[:16]
        uri = f"{self.staging_path.rstrip('/')}/{self.query}/batch_id={batch_id}/attempt={attempt}"
        rows = batch.select(*COLUMN_NAMES)
        rows.coalesce(1).write.mode("overwrite").parquet(uri)
        files = tuple(sorted(rows.sparkSession.read.parquet(uri).inputFiles()))
        return StagedBatch(query=self.query, batch_id=batch_id, uri=uri, files=files, rows=batch.count())

    def write(self, batch: DataFrame, batch_id: int) -> None:
        staged = self.stage(batch, batch_id)
        try:
            with self.open_warehouse() as warehouse:
                applied = warehouse.load_batch(staged)
        except RejectedRowsError as e:
            raise PermanentSinkError(f"warehouse sink: {e}") from e  # names the query and the batch
        except Exception as e:
            raise SinkError(f"warehouse sink failed on {self.query} batch {batch_id}: {e}") from e
        finally:
            _remove_local(staged.uri)  # a replay stages afresh; S3 staging is the warehouse's to delete
        if not applied:
            log.info("%s batch %d already in the warehouse ledger; skipped", self.query, batch_id)
