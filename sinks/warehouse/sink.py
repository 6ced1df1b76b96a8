"""Warehouse sink: stage the batch as Parquet, then apply it through the warehouse's load protocol."""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sinks.base import PermanentSinkError, SinkError
from sinks.warehouse.base import COLUMN_NAMES, DAILY, RejectedRowsError, StagedBatch, Warehouse
from streaming.transforms import stamp

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1)


def _remove_local(uri: str) -> None:
    """Remove a local attempt folder, and its batch folder once no other attempt is left in it."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        attempt = Path(parsed.path if parsed.scheme else uri)
        shutil.rmtree(attempt, ignore_errors=True)
        with contextlib.suppress(OSError):  # another attempt is still there
            attempt.parent.rmdir()


def _write_parquet(frame: DataFrame, uri: str) -> tuple[str, ...]:
    # One file per partition of the frame: a coalesce to one file would also pull the aggregation
    # that computes the frame into a single task. The loaders take any number of files.
    frame.write.mode("overwrite").parquet(uri)
    return tuple(sorted(frame.sparkSession.read.parquet(uri).inputFiles()))


@dataclass(frozen=True)
class WarehouseSink:
    """Upserts each batch of engagement rows into the warehouse exactly once (ledger per query/batch).

    With ``daily_viewers`` (batch -> the daily unique-viewer rows it changes, e.g.
    :class:`sinks.lake.LakeViewerRollups`) those rows are merged in the same transaction; with
    ``watermark_delay`` the ledger row records the watermark the batch reached: its newest event time less
    the delay, which is what Spark computes for the next batch (a window ending at or before it is final).
    With ``daily_rows`` the batch's rows are themselves daily unique-viewer rows (the ``viewers`` query):
    they are merged into their table, and no engagement rows are loaded.

    A batch without rows changes nothing in the warehouse and is not loaded: no staging, no transaction,
    no ledger row (a stateful query runs such a batch after each data batch, only to move its watermark;
    its ledger row would record no watermark either). A replay of it is just as empty.
    """

    name: str
    query: str
    staging_path: str
    open_warehouse: Callable[[], Warehouse]
    daily_viewers: Callable[[DataFrame], DataFrame] | None = None
    watermark_delay: timedelta | None = None
    daily_rows: bool = False

    def stage(self, batch: DataFrame, batch_id: int, rows: int) -> StagedBatch:
        """Write the batch (of ``rows`` rows, at least one) as Parquet under a prefix of this attempt's
        own: a replay, or a second driver working on the same batch, never overwrites (or deletes) the
        files another attempt loads."""
        attempt = uuid.uuid4().hex[:16]
        uri = f"{self.staging_path.rstrip('/')}/{self.query}/batch_id={batch_id}/attempt={attempt}"
        if self.daily_rows:
            daily = stamp(batch, batch_id).select(*DAILY.names())
            only = _write_parquet(daily, f"{uri}/{DAILY.name}")
            return StagedBatch(query=self.query, batch_id=batch_id, uri=uri, rows=rows, viewers_files=only)
        files = _write_parquet(batch.select(*COLUMN_NAMES), f"{uri}/engagement")
        viewers: tuple[str, ...] = ()
        watermark = None
        if self.daily_viewers is not None:
            daily = stamp(self.daily_viewers(batch), batch_id).select(*DAILY.names())
            viewers = _write_parquet(daily, f"{uri}/{DAILY.name}")
        if self.watermark_delay is not None:
            newest = batch.agg(F.unix_micros(F.max("last_event_time"))).first()[0]
            if newest is not None:
                watermark = EPOCH + timedelta(microseconds=newest) - self.watermark_delay
        return StagedBatch(
            query=self.query,
            batch_id=batch_id,
            uri=uri,
            files=files,
            rows=rows,
            viewers_files=viewers,
            watermark=watermark,
        )

    def write(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        rows = batch.count()
        if not rows:
            log.debug("%s batch %d has no rows; nothing to load", self.query, batch_id)
            return
        staged = self.stage(batch, batch_id, rows)
        loading = time.monotonic()
        try:
            with self.open_warehouse() as warehouse:
                applied = warehouse.load_batch(staged)
            log.info(
                "%s batch %d: %d rows staged in %.1f s, loaded in %.1f s",
                self.query, batch_id, staged.rows, loading - started, time.monotonic() - loading,
            )  # fmt: skip
        except RejectedRowsError as e:
            raise PermanentSinkError(f"warehouse sink: {e}") from e  # names the query and the batch
        except Exception as e:
            raise SinkError(f"warehouse sink failed on {self.query} batch {batch_id}: {e}") from e
        finally:
            _remove_local(staged.uri)  # a replay stages afresh; S3 staging is the warehouse's to delete
        if not applied:
            log.info("%s batch %d already in the warehouse ledger; skipped", self.query, batch_id)
