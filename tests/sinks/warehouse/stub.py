"""A warehouse that does nothing: subclass it and override the one method a test looks at."""

from __future__ import annotations

from typing import Any

from sinks.warehouse.base import StagedBatch, Warehouse


class StubWarehouse(Warehouse):
    """Every abstract method answers with nothing; ``load_batch`` reports the batch as not loaded."""

    table = "t"
    ledger_table = "l"

    def init(self) -> None: ...

    def load_batch(self, batch: StagedBatch) -> bool:
        return False

    def committed(self, query: str) -> list[int]:
        return []

    def top(self, where: Any, by: str = "impressions", limit: int = 10, min_impressions: int = 0) -> Any:
        return None

    def rank(self, where: Any, by: Any = "ctr", limit: int = 20, min_volume: int = 100) -> Any:
        return None

    def close(self) -> None: ...
