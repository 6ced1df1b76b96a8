"""Embedded DuckDB warehouse (``duckdb:///path/to/file.duckdb``): the local default."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from urllib.parse import urlparse

import duckdb

from sinks.warehouse.base import (
    COLUMN_NAMES,
    ENGAGEMENT_COLUMNS,
    KEY,
    TOP_ORDERINGS,
    StagedBatch,
    TopRow,
    Warehouse,
    WarehouseError,
    WarehouseMissingError,
    validate_identifier,
)

log = logging.getLogger(__name__)

_TYPES = {"timestamp": "TIMESTAMP", "string": "VARCHAR", "bigint": "BIGINT", "double": "DOUBLE"}


def _local_path(uri: str) -> str:
    parsed = urlparse(uri)
    return parsed.path if parsed.scheme == "file" else uri


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


class DuckDBWarehouse(Warehouse):
    """One DuckDB file. Writers create it and its tables; readers (``read_only``) create nothing.

    DuckDB lets one process write a file at a time; the pipeline holds it only while it loads a batch,
    so a reader waits up to ``lock_wait`` seconds for that load to finish.
    """

    def __init__(
        self,
        path: str,
        table: str = "content_engagement",
        ledger_table: str = "mediapulse_batches",
        *,
        read_only: bool = False,
        lock_wait: float = 30.0,
    ):
        self.table = validate_identifier(table, "warehouse.table")
        self.ledger_table = validate_identifier(ledger_table, "warehouse.ledger_table")
        self.path = path
        if read_only:
            if path == ":memory:" or not Path(path).is_file():
                raise WarehouseMissingError(f"no DuckDB warehouse file at {Path(path).absolute()}")
            self.conn = _connect_read_only(path, lock_wait)
            self.conn.execute("SET TimeZone = 'UTC'")
            return
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = duckdb.connect(path)
        except duckdb.Error as e:
            raise WarehouseError(f"cannot open DuckDB warehouse {path}: {e}") from e
        self.conn.execute("SET TimeZone = 'UTC'")
        self.init()

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

    def init(self) -> None:
        columns = ", ".join(f"{name} {_TYPES[kind]}" for name, kind in ENGAGEMENT_COLUMNS)
        self.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} ({columns}, PRIMARY KEY ({', '.join(KEY)}))"
        )
        self.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self.ledger_table} (query_name VARCHAR, batch_id BIGINT, "
            "rows BIGINT, committed_at TIMESTAMP, PRIMARY KEY (query_name, batch_id))"
        )

    def load_batch(self, batch: StagedBatch) -> bool:
        conn = self.conn
        conn.execute("BEGIN TRANSACTION")
        try:
            done = conn.execute(
                f"SELECT 1 FROM {self.ledger_table} WHERE query_name = ? AND batch_id = ?",
                [batch.query, batch.batch_id],
            ).fetchone()
            if done:
                conn.execute("ROLLBACK")
                return False
            columns = ", ".join(COLUMN_NAMES)
            files = [_local_path(f) for f in batch.files]
            conn.execute("CREATE OR REPLACE TEMP TABLE mp_stage AS SELECT * FROM " + self._source(files))
            on = " AND ".join(f"t.{k} = s.{k}" for k in KEY)
            updates = ", ".join(f"{c} = s.{c}" for c in COLUMN_NAMES if c not in KEY)
            values = ", ".join(f"s.{c}" for c in COLUMN_NAMES)
            conn.execute(
                f"MERGE INTO {self.table} AS t USING mp_stage AS s ON {on} "
                f"WHEN MATCHED THEN UPDATE SET {updates} "
                f"WHEN NOT MATCHED THEN INSERT ({columns}) VALUES ({values})"
            )
            rows = conn.execute("SELECT count(*) FROM mp_stage").fetchone()[0]
            conn.execute(
                f"INSERT INTO {self.ledger_table} VALUES (?, ?, ?, now()::TIMESTAMP)",
                [batch.query, batch.batch_id, rows],
            )
            conn.execute("DROP TABLE mp_stage")
            conn.execute("COMMIT")
            return True
        except duckdb.Error as e:
            conn.execute("ROLLBACK")
            raise WarehouseError(f"DuckDB load of {batch.query} batch {batch.batch_id} failed: {e}") from e

    @staticmethod
    def _source(files: list[str]) -> str:
        casts = ", ".join(f"CAST({name} AS {_TYPES[kind]}) AS {name}" for name, kind in ENGAGEMENT_COLUMNS)
        if not files:
            empty = ", ".join(f"CAST(NULL AS {_TYPES[kind]}) AS {name}" for name, kind in ENGAGEMENT_COLUMNS)
            return f"(SELECT {empty} WHERE false)"
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        return f"(SELECT {casts} FROM read_parquet([{listed}]))"

    def committed(self, query: str) -> list[int]:
        rows = self.conn.execute(
            f"SELECT batch_id FROM {self.ledger_table} WHERE query_name = ? ORDER BY batch_id", [query]
        ).fetchall()
        return [r[0] for r in rows]

    def top(self, by: str = "impressions", limit: int = 10) -> list[TopRow]:
        if by not in TOP_ORDERINGS:
            raise WarehouseError(f"cannot order by {by!r}: choose one of {', '.join(TOP_ORDERINGS)}")
        try:
            rows = self.conn.execute(
                f"""
                SELECT content_id, max(title), sum(impressions), sum(clicks), sum(play_starts),
                       sum(completions), sum(watch_time_ms), sum(unique_viewers),
                       CAST(sum(clicks) AS DOUBLE) / NULLIF(sum(impressions), 0),
                       CAST(sum(completions) AS DOUBLE) / NULLIF(sum(play_starts), 0)
                FROM {self.table}
                GROUP BY content_id
                ORDER BY {TOP_ORDERINGS[by]} DESC NULLS LAST, content_id
                LIMIT ?
                """,
                [int(limit)],
            ).fetchall()
        except duckdb.CatalogException as e:
            raise WarehouseMissingError(f"DuckDB warehouse {self.path} has no table {self.table}") from e
        except duckdb.Error as e:
            raise WarehouseError(f"top content from DuckDB warehouse {self.path} failed: {e}") from e
        return [TopRow(*row) for row in rows]

    def close(self) -> None:
        self.conn.close()
