"""The warehouse interface: one load protocol (:mod:`sinks.warehouse.protocol`), several backends.

Every backend applies a staged batch the same way, in ONE transaction:

1. skip if the ledger already holds ``(query, batch_id)``;
2. load the staged Parquet files into a staging table;
3. MERGE into the target by :data:`KEY` (the batch carries full aggregate values, so matched rows are
   replaced, not added to);
4. when the batch carries daily unique-viewer rollups, MERGE them into the rollup table by its key (each
   row is the estimate of a whole day, recomputed from all its sketches, so it replaces the old one);
5. insert the ledger row, with the watermark the batch reached;
6. commit.

A replayed batch is therefore a no-op, and a crash anywhere before commit leaves nothing half-applied.

The target's columns are those of :data:`streaming.schema.ENGAGEMENT` the warehouse keeps; every name
below is derived from that one definition.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from streaming.commands import UsageError
from streaming.config import is_table_name
from streaming.schema import DAILY_VIEWERS, ENGAGEMENT, ColumnType

if TYPE_CHECKING:
    import pyarrow as pa

    from sinks.warehouse.analytics import Ranking, Report, Slice, ViewQuery

# The target table: (name, logical type) in table order; each dialect maps the logical types.
TARGET = ENGAGEMENT.in_warehouse()
ENGAGEMENT_COLUMNS: tuple[tuple[str, ColumnType], ...] = tuple((c.name, c.type) for c in TARGET.columns)
KEY: tuple[str, ...] = TARGET.key
COLUMN_NAMES: tuple[str, ...] = TARGET.names()

# The daily unique-viewer rollup (streaming.schema.DAILY_VIEWERS), in table order.
DAILY = DAILY_VIEWERS.in_warehouse()
DAILY_COLUMNS: tuple[tuple[str, ColumnType], ...] = tuple((c.name, c.type) for c in DAILY.columns)


class WarehouseError(RuntimeError):
    """A warehouse operation failed; the streaming query restarts from its checkpoint."""


class RejectedRowsError(WarehouseError):
    """The warehouse rejected rows of a batch for a data reason (a value too long or out of range for its
    column, a violated constraint). Every replay of the batch would fail the same way, so a load is not
    retried and the app stops instead of restarting the query (:class:`sinks.base.PermanentSinkError`)."""


class WarehouseMissingError(UsageError, WarehouseError):
    """A reader found no warehouse (no DuckDB file, or no table) and created nothing."""


def validate_identifier(name: str, what: str = "identifier") -> str:
    """Return ``name`` if it is a plain SQL identifier (optionally ``schema.table``), else raise."""
    if not is_table_name(name):
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
    # Parquet files of daily_unique_viewers rows (columns of DAILY) to merge in the same transaction.
    viewers_files: tuple[str, ...] = field(default_factory=tuple)
    # The watermark the batch reached (naive UTC), recorded in the ledger; None when it has none.
    watermark: datetime | None = None

    def files_for(self, viewers: bool) -> tuple[str, ...]:
        """The engagement files, or (``viewers``) the daily unique-viewer files."""
        return self.viewers_files if viewers else self.files


@dataclass(frozen=True)
class Isolation:
    """The isolation level loads run at, as one line, and a warning when it lets two loads both commit."""

    line: str
    warning: str | None = None


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
    def top(self, where: Slice, by: str = "impressions", limit: int = 10, min_impressions: int = 0) -> Report:
        """Top content of a slice of windows (see :func:`sinks.warehouse.analytics.top_sql`)."""

    @abstractmethod
    def rank(self, where: Slice, by: Ranking = "ctr", limit: int = 20, min_volume: int = 100) -> Report:
        """Content of one affiliate's slot ranked by a Wilson lower bound (see ``analytics.rank_sql``)."""

    def read_view(self, query: ViewQuery) -> Report:
        """Rows of one read of the analyst views (see ``analytics.ViewQuery``), rendered for this backend
        and run like ``top`` and ``rank``."""
        raise WarehouseError(f"{type(self).__name__} cannot read the analyst views")

    @abstractmethod
    def close(self) -> None: ...

    # --- administration (`mediapulse warehouse …`): a backend without it refuses by name ------------

    def sync_content_dim(self, read: Callable[[], pa.Table]) -> int:
        """Replace the content dimension with the table ``read()`` returns, in one transaction; returns
        its row count. ``read`` is called only once the backend has accepted the operation."""
        raise _unsupported("sync-dimensions")

    def check(self) -> list[str]:
        """Differences between the expected and the actual table definitions (empty when all match)."""
        raise _unsupported("check")

    def isolation(self) -> Isolation:
        """The isolation level loads run at (and a warning where it is too weak)."""
        raise _unsupported("check")

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unsupported(command: str) -> WarehouseError:
    return WarehouseError(f"{command} supports postgresql:// and redshift:// warehouses")
