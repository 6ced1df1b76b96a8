"""Embedded DuckDB warehouse (``duckdb:///path/to/file.duckdb``): the local default.

The load protocol of :mod:`sinks.warehouse.protocol` in DuckDB's dialect; DuckDB fills the staging table
by reading the staged Parquet files itself. One process writes a DuckDB file at a time, and within the
process the queries that load (engagement windows, daily viewers) take turns on a lock per file, so loads
need no lock in the database, and an embedded engine has no connection to lose: nothing is retried.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

import duckdb

from sinks.warehouse import sql
from sinks.warehouse.base import StagedBatch, WarehouseError, WarehouseMissingError
from sinks.warehouse.protocol import SqlWarehouse
from sinks.warehouse.staging import local_path

log = logging.getLogger(__name__)

_FORMAT_MARKERS = re.compile(r"%[s%]")

# Per DuckDB file: held by an open warehouse of this process from open to close. DuckDB refuses a second
# connection of another configuration (read-only) and conflicts on concurrent catalog changes (the views
# each writer creates), so two queries loading batches at the same time take turns.
_FILE_LOCKS: dict[str, threading.RLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _file_lock(path: str) -> threading.RLock:
    key = path if path == ":memory:" else str(Path(path).resolve())
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.RLock())


def _connect_read_only(path: str, lock_wait: float) -> duckdb.DuckDBPyConnection:
    """A read-only connection; while a writer holds the file (a batch load), wait up to ``lock_wait`` s."""
    deadline = time.monotonic() + lock_wait
    waiting = False
    while True:
        try:
            return duckdb.connect(path, read_only=True)
        except duckdb.IOException as e:
            if "lock" not in str(e).lower() or time.monotonic() >= deadline:
                raise WarehouseError(f"cannot open DuckDB warehouse {path} read-only: {e}") from e
            if not waiting:
                log.info("%s is being written; waiting up to %.0f s to read it", path, lock_wait)
                waiting = True
            time.sleep(0.1)
        except duckdb.Error as e:
            raise WarehouseError(f"cannot open DuckDB warehouse {path} read-only: {e}") from e


class _Session:
    """A DuckDB connection as the protocol drives a DB-API one.

    Its cursor is the connection itself: a DuckDB cursor is a connection of its own, which would not see
    the load's temporary tables nor the session's time zone. Parameters come in the protocol's ``%s``
    style and go to DuckDB as ``?``. Outside ``BEGIN … COMMIT`` every statement commits by itself, as on
    an autocommit DB-API connection.
    """

    autocommit = True

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self._conn = conn

    def cursor(self) -> _Session:
        return self

    def execute(self, statement: str, params: Any = None) -> _Session:
        if params is not None:
            statement = _FORMAT_MARKERS.sub(lambda m: "?" if m[0] == "%s" else "%", statement)
        self._conn.execute(statement, params)
        return self

    def fetchone(self) -> Any:
        return self._conn.fetchone()

    def fetchall(self) -> list[Any]:
        return self._conn.fetchall()

    def close(self) -> None:
        self._conn.close()


class DuckDBWarehouse(SqlWarehouse):
    """One DuckDB file. Writers create it and its tables; readers (``read_only``) create nothing.

    DuckDB lets one process write a file at a time; the pipeline holds it only while it loads a batch,
    so a reader waits up to ``lock_wait`` seconds for that load to finish.
    """

    dialect: sql.Dialect = "duckdb"

    def __init__(
        self,
        path: str,
        table: str = "content_engagement",
        ledger_table: str = "mediapulse_batches",
        *,
        read_only: bool = False,
        lock_wait: float = 30.0,
    ):
        super().__init__(sql.Tables.in_default_schema(table, ledger_table))
        self.path = path
        self.location = f"DuckDB warehouse {path}"
        self.read_only = read_only
        self.lock_wait = lock_wait
        if read_only and (path == ":memory:" or not Path(path).is_file()):
            raise WarehouseMissingError(f"no DuckDB warehouse file at {Path(path).absolute()}")
        if not read_only and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = _file_lock(path) if path != ":memory:" else None
        if self._lock is not None:
            self._lock.acquire()
        try:
            self._cursor()  # open now: a writer holds the file until close
            if not read_only:
                self.init()
        except BaseException:
            self._release()
            raise

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    @classmethod
    def from_config(cls, cfg, *, read_only: bool = False) -> DuckDBWarehouse:  # cfg: WarehouseConfig
        """``duckdb:///relative/file.duckdb`` or ``duckdb:////absolute/file.duckdb`` (SQLAlchemy style)."""
        rest = cfg.url.removeprefix("duckdb://")
        path = rest[1:] if rest.startswith("/") else rest
        if not path:
            raise WarehouseError(
                f"warehouse.url {cfg.url!r} names no DuckDB file (duckdb:///path/file.duckdb)"
            )
        return cls(path, cfg.table, cfg.ledger_table, read_only=read_only)

    def _connect(self) -> _Session:
        if self.read_only:
            return _Session(_connect_read_only(self.path, self.lock_wait))
        try:
            return _Session(duckdb.connect(self.path))
        except duckdb.Error as e:
            raise WarehouseError(f"cannot open DuckDB warehouse {self.path}: {e}") from e

    def _retry_reason(self, error: BaseException) -> str | None:
        return None

    def _rejects_rows(self, error: BaseException) -> bool:
        return isinstance(error, duckdb.ConversionException | duckdb.ConstraintException)

    def _is_missing_table(self, error: BaseException) -> bool:
        return isinstance(error, duckdb.CatalogException)

    def _stage(self, cur: Any, batch: StagedBatch, prepared: Any, stage: str = sql.STAGE_TABLE) -> None:
        files = batch.files_for(stage == sql.STAGE_VIEWERS_TABLE)
        if files:  # an empty batch: nothing to read, the MERGE is a no-op, the ledger row counts
            cur.execute(sql.insert_parquet_sql(stage, [local_path(f) for f in files]))
