"""The warehouse interface: one load protocol, several backends.

Every backend applies a staged batch the same way, in ONE transaction:

1. skip if the ledger already holds ``(query, batch_id)``;
2. load the staged Parquet files into a staging table;
3. MERGE into the target by :data:`KEY` (the batch carries full aggregate values, so matched rows are
   replaced, not added to);
4. insert the ledger row;
5. commit.

A replayed batch is therefore a no-op, and a crash anywhere before commit leaves nothing half-applied.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Literal

# (name, logical type) in table order. Logical types map to each backend's SQL types.
ColumnType = Literal["timestamp", "string", "bigint", "double"]
ENGAGEMENT_COLUMNS: tuple[tuple[str, ColumnType], ...] = (
    ("window_start", "timestamp"),
    ("window_end", "timestamp"),
    ("content_id", "string"),
    ("affiliate_id", "string"),
    ("platform", "string"),
    ("title", "string"),
    ("category", "string"),
    ("content_type", "string"),
    ("impressions", "bigint"),
    ("clicks", "bigint"),
    ("play_starts", "bigint"),
    ("completions", "bigint"),
    ("watch_time_ms", "bigint"),
    ("unique_viewers", "bigint"),
    ("ctr", "double"),
    ("completion_rate", "double"),
    ("updated_at", "timestamp"),
    ("batch_id", "bigint"),
)
KEY: tuple[str, ...] = ("window_start", "content_id", "affiliate_id", "platform")
COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _ in ENGAGEMENT_COLUMNS)

# What `mediapulse top --by X` orders by.
TOP_ORDERINGS: dict[str, str] = {
    "impressions": "SUM(impressions)",
    "clicks": "SUM(clicks)",
    "plays": "SUM(play_starts)",
    "completions": "SUM(completions)",
    "watch_time": "SUM(watch_time_ms)",
    "ctr": "CAST(SUM(clicks) AS DOUBLE PRECISION) / NULLIF(SUM(impressions), 0)",
    "completion_rate": "CAST(SUM(completions) AS DOUBLE PRECISION) / NULLIF(SUM(play_starts), 0)",
}

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,126}$")


class WarehouseError(RuntimeError):
    """A warehouse operation failed; the streaming query restarts from its checkpoint."""


class WarehouseMissingError(WarehouseError):
    """A reader found no warehouse (no DuckDB file, or no table) and created nothing."""


def validate_identifier(name: str, what: str = "identifier") -> str:
    """Return ``name`` if it is a plain SQL identifier (optionally ``schema.table``), else raise."""
    parts = name.split(".")
    if not (1 <= len(parts) <= 2) or not all(_IDENTIFIER.match(p) for p in parts):
        raise WarehouseError(f"invalid {what} {name!r}: use letters, digits and _ (optionally schema.table)")
    return name


@dataclass(frozen=True)
class StagedBatch:
    """A micro-batch of engagement rows written by Spark as Parquet, ready to load.

    ``uri`` is the staging directory (local path or ``s3://``); ``files`` are the Parquet data files in
    it (absolute, same scheme); ``rows`` is the row count Spark wrote.
    """

    query: str
    batch_id: int
    uri: str
    files: tuple[str, ...] = field(default_factory=tuple)
    rows: int = 0


@dataclass(frozen=True)
class TopRow:
    content_id: str
    title: str | None
    impressions: int
    clicks: int
    play_starts: int
    completions: int
    watch_time_ms: int
    unique_viewers: int
    ctr: float | None
    completion_rate: float | None


class Warehouse(ABC):
    """A warehouse backend. Use as a context manager; ``close`` releases the connection."""

    table: str
    ledger_table: str

    @abstractmethod
    def init(self) -> None:
        """Create schema, target, ledger (and backend extras) idempotently."""

    @abstractmethod
    def load_batch(self, batch: StagedBatch) -> bool:
        """Apply the batch exactly once. Returns False when the ledger shows it was already applied."""

    @abstractmethod
    def committed(self, query: str) -> list[int]:
        """Batch ids of ``query`` recorded in the ledger, ascending."""

    @abstractmethod
    def top(self, by: str = "impressions", limit: int = 10) -> list[TopRow]:
        """Top content over all windows, ordered by one of :data:`TOP_ORDERINGS`."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
