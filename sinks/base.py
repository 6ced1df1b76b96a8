"""The sink contract: every destination of a micro-batch implements :class:`Sink`; :func:`write_all` (and
:class:`BatchWriter`, a query's foreachBatch function) writes a batch to every sink of a query or a backfill.

A sink's ``write`` must be idempotent per ``batch_id``: when Spark replays a batch after a failure, the
sink either replaces its own earlier output for that batch or recognises the batch as already applied.
Errors propagate (so the query stops and restarts from its checkpoint), chained as :class:`SinkError`;
one that a replay would repeat is a :class:`PermanentSinkError`, which stops the app instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, overload, runtime_checkable

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
        """Write one micro-batch; idempotent per ``batch_id``.

        The batch is cached while the sinks write when :func:`write_all` persists it (a stateful query's
        output); otherwise (the events query, whose batch is a scan of record files) each sink's reads
        compute it again.
        """
        ...


@overload
def write_all(
    sinks: Sequence[Sink], batch: DataFrame, batch_id: int,
    *, persist: bool = ..., count: Literal[False] = ...
) -> None: ...


@overload
def write_all(sinks: Sequence[Sink], batch: DataFrame, batch_id: int, *, count: Literal[True]) -> int: ...


def write_all(
    sinks: Sequence[Sink],
    batch: DataFrame,
    batch_id: int,
    *,
    persist: bool = True,
    count: bool = False,
    prepare: Callable[[DataFrame, int], DataFrame] | None = None,
) -> int | None:
    """Write every sink; with ``persist``, the batch is computed once and cached until all have written.

    Persist a batch that is costly or unsafe to compute twice (a stateful aggregation's output); a batch
    that is a cheap file scan is faster read again by each sink than cached. With ``count``, the cached
    batch's rows are counted before the sinks write and the count is returned (a backfill reports it);
    without it no Spark job runs beyond the sinks' own.

    ``prepare(batch, batch_id)`` (e.g. stamping the batch id) is applied after the batch is cached, so
    its per-batch constants stay out of the code Spark generates for computing the batch itself (that
    code is then the same every micro-batch, and compiled once).
    """
    if not persist:
        if count:
            raise ValueError("write_all counts a persisted batch only (counting would compute it again)")
        frame = prepare(batch, batch_id) if prepare else batch
        for sink in sinks:
            sink.write(frame, batch_id)
        return None
    batch.persist()
    try:
        rows = batch.count() if count else None
        frame = prepare(batch, batch_id) if prepare else batch
        for sink in sinks:
            sink.write(frame, batch_id)
        return rows
    finally:
        batch.unpersist()


@dataclass(frozen=True)
class BatchWriter:
    """The foreachBatch function of a query: prepare the batch, then write every sink (:func:`write_all`)."""

    sinks: tuple[Sink, ...]
    prepare: Callable[[DataFrame, int], DataFrame] | None = None
    persist: bool = True

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        write_all(self.sinks, batch, batch_id, persist=self.persist, prepare=self.prepare)
