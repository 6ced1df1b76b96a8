"""The sink contract: every destination of a micro-batch implements :class:`Sink`.

A sink's ``write`` must be idempotent per ``batch_id``: when Spark replays a batch after a failure, the
sink either replaces its own earlier output for that batch or recognises the batch as already applied.
Errors propagate (so the query stops and restarts from its checkpoint), chained as :class:`SinkError`;
one that a replay would repeat is a :class:`PermanentSinkError`, which stops the app instead.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pyspark.sql import DataFrame


class SinkError(RuntimeError):
    """A sink could not write a micro-batch."""


class PermanentSinkError(SinkError):
    """A sink could not write a micro-batch, and no replay of it ever will (the destination rejects its
    data): the app stops with this message instead of restarting the query from its checkpoint."""


@runtime_checkable
class Sink(Protocol):
    name: str

    def write(self, batch: DataFrame, batch_id: int) -> None:
        """Write one micro-batch (already persisted by the caller); idempotent per ``batch_id``."""
        ...


def write_all(sinks: list[Sink], batch: DataFrame, batch_id: int, *, persist: bool = True) -> None:
    """Write every sink; with ``persist``, the batch is computed once and cached until all have written.

    Persist a batch that is costly or unsafe to compute twice (a stateful aggregation's output); a batch
    that is a cheap file scan is faster read again by each sink than cached.
    """
    if not persist:
        for sink in sinks:
            sink.write(batch, batch_id)
        return
    batch.persist()
    try:
        for sink in sinks:
            sink.write(batch, batch_id)
    finally:
        batch.unpersist()
