"""Warehouse backends behind one interface, chosen by ``warehouse.url``'s scheme."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sinks.warehouse.base import StagedBatch, Warehouse, WarehouseError, WarehouseMissingError
from streaming.config import WAREHOUSE_SCHEMES

if TYPE_CHECKING:
    from streaming.config import WarehouseConfig

__all__ = [
    "StagedBatch",
    "Warehouse",
    "WarehouseError",
    "WarehouseMissingError",
    "open_warehouse",
]


def open_warehouse(cfg: WarehouseConfig, *, read_only: bool = False) -> Warehouse:
    """Open the backend named by the URL scheme (``duckdb://``, ``postgresql://``, ``redshift://``).

    ``read_only`` is for readers (``mediapulse top``): they create nothing, and a DuckDB file is opened
    read-only. The SQL backends never create anything when opened; only ``init`` does.
    """
    scheme = cfg.url.split(":", 1)[0]
    if scheme == "duckdb":
        from sinks.warehouse.duckdb import DuckDBWarehouse

        return DuckDBWarehouse.from_config(cfg, read_only=read_only)
    if scheme == "postgresql":
        from sinks.warehouse.postgres import PostgresWarehouse

        return PostgresWarehouse.from_config(cfg)
    if scheme == "redshift":
        from sinks.warehouse.redshift import RedshiftWarehouse

        return RedshiftWarehouse.from_config(cfg)
    raise WarehouseError(f"unsupported warehouse url scheme {scheme!r} ({', '.join(WAREHOUSE_SCHEMES)})")
