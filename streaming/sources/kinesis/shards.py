"""Reading a Kinesis stream shard by shard: listing and lineage, bounded fetches, exact replays.

:class:`StreamFetcher` is the engine of the Python source. ``fetch`` reads what is new after an offset
(bounded by a record budget and a time budget) and returns the records with the offset they end at;
``replay`` re-reads exactly the records between two offsets. Parents are read to their end before their
children start (resharding), every GetRecords call is paced per shard, throttling is retried with
backoff, and a gap in a shard (records expired before they were read) is a named error or, when allowed,
a counted and logged loss - never silent.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from botocore.exceptions import ClientError

from streaming.sources.kinesis.client import (
    GET_RECORDS_PER_SECOND,
    MAX_RECORDS_PER_CALL,
    READ_BYTES_PER_SECOND,
    RetryPolicy,
    ShardPacer,
    call_with_retries,
    error_code,
    make_client,
)
from streaming.sources.kinesis.errors import KinesisDataLossError, KinesisSourceError, StreamNotFoundError
from streaming.sources.kinesis.offsets import (
    AT_TIMESTAMP,
    SHARD_END,
    TRIM_HORIZON,
    KinesisOffset,
    after,
    sequence_of,
)
from streaming.sources.kinesis.records import expand, row_count, to_record_batch

logger = logging.getLogger(__name__)

# A cached shard iterator is reused while younger than this (Kinesis expires them after 5 minutes).
ITERATOR_TTL = 270.0
# Kinesis keeps records at least 24 h: a position this source itself read from less than this long ago
# cannot have lost records since, so its iterator is not re-verified.
VERIFIED_TTL = 23 * 3600.0
LIST_SHARDS_INTERVAL = 1.0
MIN_RECORDS_PER_CALL = 100
# A replay that must read a closed shard to its end gives up after this many empty polls (~10 s).
MAX_IDLE_POLLS_TO_SHARD_END = 50
MAX_READ_THREADS = 32  # threads mostly wait (on Kinesis, or on pacing): one per shard, up to this


@dataclass(frozen=True)
class FetchSettings:
    """What the fetcher needs from ``SourceConfig``, as plain values."""

    stream: str
    region: str | None = None
    endpoint_url: str | None = None
    starting_position: str = TRIM_HORIZON  # TRIM_HORIZON | LATEST | AT_TIMESTAMP
    starting_timestamp_ms: int | None = None  # AT_TIMESTAMP's time; LATEST's pinned time, if given
    max_records_per_trigger: int = 100_000
    max_fetch_time: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    fail_on_data_loss: bool = True
    get_records_per_second: int = GET_RECORDS_PER_SECOND
    read_bytes_per_second: float = READ_BYTES_PER_SECOND


def _returned_bytes(answer: Mapping[str, Any]) -> int:
    return sum(len(record["Data"]) for record in answer.get("Records", []))


def _epoch_ms(arrival: Any) -> float:
    """An arrival time as epoch milliseconds: epoch seconds (how this source's client leaves them) or a
    ``datetime`` (botocore's default)."""
    if isinstance(arrival, datetime):
        return arrival.timestamp() * 1000
    return float(arrival) * 1000


@dataclass(frozen=True)
class ShardInfo:
    shard_id: str
    parents: tuple[str, ...] = ()
    closed: bool = False  # split or merged: no new records, its end can be read


def lineage_rounds(shard_ids: Iterable[str], parents: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Group shards into rounds so that every shard comes after the parents among ``shard_ids``."""
    pending = sorted(set(shard_ids))
    placed: set[str] = set()
    rounds: list[list[str]] = []
    while pending:
        ready = [s for s in pending if all(p in placed or p not in pending for p in parents.get(s, ()))]
        if not ready:  # a cycle cannot happen in Kinesis; do not loop forever if a listing says otherwise
            ready = pending
        rounds.append(ready)
        placed.update(ready)
        pending = [s for s in pending if s not in placed]
    return rounds


class Budget:
    """Rows a fetch may still take, shared fairly by the threads reading the shards of one round.

    Before each GetRecords call a thread reserves rows not yet reserved by calls in flight (an equal share
    among the shards still reading that hold no reservation), and settles the reservation with what came
    back. Calls never ask for more than the budget holds, so nothing is read only to be thrown away; the
    first calls of a fetch split the budget evenly, so a shard with a backlog cannot starve the others.
    """

    def __init__(self, rows: int) -> None:
        self._remaining = rows
        self._reserved = 0
        self._holding = 0
        self._reading = 1
        self._lock = threading.Lock()

    def start_round(self, shards: int) -> None:
        with self._lock:
            self._reading = max(1, shards)

    def shard_done(self) -> None:
        with self._lock:
            self._reading = max(1, self._reading - 1)

    @property
    def exhausted(self) -> bool:
        with self._lock:
            return self._remaining <= 0

    def reserve(self, cap: int = MAX_RECORDS_PER_CALL) -> int:
        """The ``Limit`` for one GetRecords call, at most ``cap`` (0: nothing left, stop reading)."""
        with self._lock:
            free = self._remaining - self._reserved
            if free <= 0:
                return 0
            waiting = max(1, self._reading - self._holding)
            limit = max(1, min(cap, math.ceil(free / waiting)))
            self._reserved += limit
            self._holding += 1
            return limit

    def settle(self, reserved: int, rows_per_record: Sequence[int] = ()) -> int:
        """Release a reservation and admit leading records while rows remain; returns how many were
        admitted. A KPL record is admitted whole, so its user records may overshoot the bound a little."""
        with self._lock:
            self._reserved -= reserved
            self._holding -= 1
            kept = 0
            for rows in rows_per_record:
                if self._remaining <= 0:
                    break
                self._remaining -= rows
                kept += 1
            return kept


@dataclass
class _CachedIterator:
    position: str
    iterator: str
    created: float


@dataclass
class _ShardState:
    pacer: ShardPacer
    cached: _CachedIterator | None = None
    verified: tuple[str, float] | None = None  # (position, wall time) last read from without a gap
    record_bytes: float = 1000.0  # running mean size of this shard's records


@dataclass
class ShardRead:
    shard_id: str
    position: str
    batches: list[pa.RecordBatch]
    rows: int = 0
    calls: int = 0


@dataclass
class _Cursor:
    """Where one read of one shard stands: its iterator, what it read, and what it must still check."""

    shard_id: str
    state: _ShardState
    read: ShardRead
    start_timestamp_ms: int | None
    replay: bool
    iterator: str | None = None
    expected: str | None = None  # the checkpointed record the first answer must start with
    reusable: bool = True  # whether ``iterator`` may serve the next fetch
    done: bool = False


@dataclass
class _Page:
    """One GetRecords answer, the checkpointed record dropped."""

    records: list[Any]
    next_iterator: str | None
    caught_up: bool  # nothing newer in the shard
    reached: bool = False  # replay: the batch's last record is among the records


class StreamFetcher:
    """Reads one stream for the Python source; holds per-shard pacing and iterators between fetches."""

    def __init__(
        self,
        settings: FetchSettings,
        client: Any = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._client = client
        self._sleep = sleep
        self._clock = clock
        self._wall = wall
        self._states: dict[str, _ShardState] = {}
        self._listing: tuple[float, list[ShardInfo]] | None = None
        self._lock = threading.Lock()
        self.data_loss_events = 0

    # ----------------------------------------------------------------------------------------- plumbing

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client(self.settings.endpoint_url, self.settings.region, MAX_READ_THREADS + 2)
        return self._client

    def _call(self, operation: Callable[[], Any], what: str) -> Any:
        return call_with_retries(operation, what=what, policy=self.settings.retry, sleep=self._sleep)

    def _state(self, shard_id: str) -> _ShardState:
        with self._lock:
            state = self._states.get(shard_id)
            if state is None:
                pacer = ShardPacer(
                    self.settings.get_records_per_second,
                    self.settings.read_bytes_per_second,
                    clock=self._clock,
                    sleep=self._sleep,
                )
                state = self._states[shard_id] = _ShardState(pacer)
            return state

    def _where(self, shard_id: str) -> str:
        return f"stream {self.settings.stream!r} shard {shard_id}"

    def _data_loss(self, message: str) -> None:
        if self.settings.fail_on_data_loss:
            raise KinesisDataLossError(
                f"{message}. Set source.fail_on_data_loss=false to log and count such gaps and go on."
            )
        with self._lock:
            self.data_loss_events += 1
            events = self.data_loss_events
        logger.warning("kinesis data loss (event %d of this reader): %s", events, message)

    def _require_stream(self) -> None:
        stream = self.settings.stream
        try:
            self._call(
                lambda: self.client.describe_stream_summary(StreamName=stream),
                f"DescribeStreamSummary {stream!r}",
            )
        except ClientError as e:
            if error_code(e) == "ResourceNotFoundException":
                raise StreamNotFoundError(stream, e.response.get("Error", {}).get("Message", "")) from e
            raise

    def list_shards(self, *, fresh: bool = False) -> list[ShardInfo]:
        """Every shard of the stream (open and closed ones still within retention), at most once a second."""
        now = self._clock()
        if not fresh and self._listing is not None and now - self._listing[0] < LIST_SHARDS_INTERVAL:
            return self._listing[1]
        stream = self.settings.stream
        shards: list[ShardInfo] = []
        token: str | None = None
        while True:
            kwargs = {"NextToken": token} if token else {"StreamName": stream}
            try:
                page = self._call(lambda kw=kwargs: self.client.list_shards(**kw), f"ListShards {stream!r}")
            except ClientError as e:
                if error_code(e) == "ResourceNotFoundException":
                    raise StreamNotFoundError(stream, e.response.get("Error", {}).get("Message", "")) from e
                raise
            for shard in page.get("Shards", []):
                parents = tuple(
                    p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p
                )
                closed = bool(shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber"))
                shards.append(ShardInfo(shard["ShardId"], parents, closed))
            token = page.get("NextToken")
            if not token:
                break
        self._listing = (now, shards)
        return shards

    # ---------------------------------------------------------------------------------------- offsets

    def initial_offset(self) -> KinesisOffset:
        """Every shard at the configured starting position. ``LATEST`` is pinned to the time the settings
        give (the query's first start, see ``read_kinesis``), else to the current time."""
        shards = self.list_shards(fresh=True)
        position = self.settings.starting_position
        pinned = self.settings.starting_timestamp_ms
        if position == TRIM_HORIZON:
            return KinesisOffset(self.settings.stream, {s.shard_id: TRIM_HORIZON for s in shards})
        if position == "LATEST":
            timestamp_ms = int(self._wall() * 1000) if pinned is None else pinned
        elif position == AT_TIMESTAMP and pinned is not None:
            timestamp_ms = pinned
        else:
            raise KinesisSourceError(f"unsupported starting position {position!r}")
        return KinesisOffset(self.settings.stream, {s.shard_id: AT_TIMESTAMP for s in shards}, timestamp_ms)

    def fetch(
        self, start: KinesisOffset, max_rows: int | None = None
    ) -> tuple[list[pa.RecordBatch], KinesisOffset]:
        """Records after ``start``: at most ``max_rows`` (default ``max_records_per_trigger``) rows, read
        within ``max_fetch_time``, and the offset they end at."""
        positions = dict(start.shards)
        parents: dict[str, tuple[str, ...]] = {}
        closed: set[str] = set()
        self._merge_listing(positions, parents, closed, fresh=False)

        def eligible(shard_id: str) -> bool:
            return positions[shard_id] != SHARD_END and all(
                positions.get(parent, SHARD_END) == SHARD_END for parent in parents.get(shard_id, ())
            )

        limit = self.settings.max_records_per_trigger if max_rows is None else max_rows
        budget = Budget(limit)
        deadline = self._clock() + self.settings.max_fetch_time
        batches: list[pa.RecordBatch] = []
        visited: set[str] = set()
        rows = 0
        while not budget.exhausted and self._clock() < deadline:
            todo = [s for s in sorted(positions) if s not in visited and eligible(s)]
            if not todo:
                break
            budget.start_round(len(todo))
            reads = self._map(
                lambda s: self._fetch_shard(s, positions[s], start, budget, deadline, s in closed), todo
            )
            for read in reads:
                positions[read.shard_id] = read.position
                batches.extend(read.batches)
                rows += read.rows
            visited.update(todo)
            if not any(read.position == SHARD_END for read in reads):
                break  # no shard ended, so no child became readable
            self._merge_listing(positions, parents, closed, fresh=True)  # the children may be new
        if budget.exhausted:
            logger.info(
                "kinesis %s: read the %d rows allowed for this trigger; more records may be waiting",
                self.settings.stream,
                limit,
            )
        logger.debug("kinesis %s: fetched %d rows", self.settings.stream, rows)
        return batches, start.with_shards(positions)

    def _merge_listing(
        self,
        positions: dict[str, str],
        parents: dict[str, tuple[str, ...]],
        closed: set[str],
        *,
        fresh: bool,
    ) -> None:
        """Add shards born since ``positions`` was written; forget finished shards the stream dropped."""
        listing = self.list_shards(fresh=fresh)
        parents.clear()
        parents.update((shard.shard_id, shard.parents) for shard in listing)
        closed.clear()
        closed.update(shard.shard_id for shard in listing if shard.closed)
        for shard in listing:
            positions.setdefault(shard.shard_id, TRIM_HORIZON)  # a child born after the query started
        for shard_id, position in list(positions.items()):
            if shard_id in parents:
                continue
            if position != SHARD_END:
                self._data_loss(
                    f"{self._where(shard_id)} no longer exists but was read only to {position}: "
                    "its remaining records expired unread"
                )
            del positions[shard_id]  # gone from the stream and done with: forget it

    def replay(self, start: KinesisOffset, end: KinesisOffset) -> Iterator[pa.RecordBatch]:
        """Exactly the records of the batch ``(start, end]``, parents before children."""
        work = {
            shard_id: (start.shards.get(shard_id, TRIM_HORIZON), until)
            for shard_id, until in end.shards.items()
            if start.shards.get(shard_id, TRIM_HORIZON) != until and until not in (TRIM_HORIZON, AT_TIMESTAMP)
        }
        if not work:
            return iter(())
        parents = {s.shard_id: s.parents for s in self.list_shards()}
        batches: list[pa.RecordBatch] = []
        for round_ in lineage_rounds(work, parents):
            reads = self._map(
                lambda s: self._replay_shard(s, work[s][0], start.start_timestamp_ms, work[s][1]), round_
            )
            for read in reads:
                batches.extend(read.batches)
        return iter(batches)

    def backlog(self, end: KinesisOffset, arrived_before: float) -> dict[str, str]:
        """Shards that hold unread records after ``end`` which arrived before ``arrived_before`` (epoch
        seconds), each with what shows it; one GetRecords call (``Limit`` 1) per shard not read to its end.

        A shard is behind when its next record arrived before that time, or, when Kinesis answers with
        no record, when ``MillisBehindLatest`` says the records ahead are older than that. Records that
        arrived later are not a backlog of the run that started then, so a stream that is written all
        the time still lets a drain end. Shards born after ``end`` count from their oldest record.
        """
        listing = {shard.shard_id for shard in self.list_shards(fresh=True)}
        positions = {shard_id: end.shards.get(shard_id, TRIM_HORIZON) for shard_id in sorted(listing)}
        todo = [s for s, position in positions.items() if position != SHARD_END]
        if not todo:
            return {}
        cutoff_ms = arrived_before * 1000

        def probe(shard_id: str) -> str | None:
            iterator, _ = self._iterator(shard_id, positions[shard_id], end.start_timestamp_ms, verify=False)
            if iterator is None:
                return None
            state = self._state(shard_id)
            answer = self._call(
                lambda: state.pacer.call(
                    lambda: self.client.get_records(ShardIterator=iterator, Limit=1), _returned_bytes
                ),
                f"GetRecords {self._where(shard_id)}",
            )
            records = answer.get("Records", [])
            if records:
                early_ms = cutoff_ms - _epoch_ms(records[0]["ApproximateArrivalTimestamp"])
                if early_ms > 0:
                    return f"unread record {records[0]['SequenceNumber']} arrived {early_ms:.0f} ms before"
                return None
            if answer.get("NextShardIterator") is None:
                return None  # a closed shard read to its end: its children hold the rest
            behind_ms = answer.get("MillisBehindLatest", 0)
            if behind_ms > self._wall() * 1000 - cutoff_ms:
                return f"MillisBehindLatest {behind_ms}"
            return None

        with ThreadPoolExecutor(max_workers=min(MAX_READ_THREADS, len(todo))) as pool:
            found = dict(zip(todo, pool.map(probe, todo), strict=True))
        return {shard_id: why for shard_id, why in found.items() if why is not None}

    def _fetch_shard(
        self,
        shard_id: str,
        position: str,
        start: KinesisOffset,
        budget: Budget,
        deadline: float,
        closed: bool,
    ) -> ShardRead:
        """Read one shard from ``position`` until it is caught up (a ``closed`` one: until its end),
        ``budget`` runs out or ``deadline`` passes; its iterator is kept for the next fetch."""
        try:
            cursor = self._open(shard_id, position, start.start_timestamp_ms, replay=False)
            while not cursor.done and not budget.exhausted and cursor.state.pacer.wait(deadline):
                limit = budget.reserve(self._records_per_call(cursor.state))
                if limit == 0:
                    break
                page = self._next_page(cursor, limit, budget)
                if page is None:
                    continue  # the iterator had expired: renewed
                expanded = expand(page.records)
                kept = budget.settle(limit, [row_count(u) for u in expanded])
                if not self._take(cursor, page, page.records[:kept], expanded[:kept]):
                    break
                if page.caught_up and not closed:
                    break
                if not page.caught_up and self._clock() >= deadline:
                    break
            self._close(cursor)
            return cursor.read
        finally:
            budget.shard_done()

    def _map(self, function: Callable[[str], ShardRead], shard_ids: list[str]) -> list[ShardRead]:
        if len(shard_ids) == 1:
            return [function(shard_ids[0])]
        with ThreadPoolExecutor(max_workers=min(MAX_READ_THREADS, len(shard_ids))) as pool:
            return list(pool.map(function, shard_ids))

    # ---------------------------------------------------------------------------------- one shard

    def _iterator(
        self, shard_id: str, position: str, start_timestamp_ms: int | None, verify: bool
    ) -> tuple[str | None, str | None]:
        """A fresh shard iterator for ``position`` and the sequence number its first record must have.

        Resuming after sequence number ``S`` with ``verify`` asks for an iterator *at* ``S``: if the first
        record returned is not ``S``, records after the checkpoint may have expired unread.
        """
        stream = self.settings.stream
        kwargs: dict[str, Any] = {"StreamName": stream, "ShardId": shard_id}
        expected: str | None = None
        sequence = sequence_of(position)
        if position == TRIM_HORIZON:
            kwargs["ShardIteratorType"] = TRIM_HORIZON
        elif position == AT_TIMESTAMP:
            kwargs["ShardIteratorType"] = AT_TIMESTAMP
            kwargs["Timestamp"] = datetime.fromtimestamp((start_timestamp_ms or 0) / 1000, UTC)
        elif sequence is not None:
            kwargs["StartingSequenceNumber"] = sequence
            kwargs["ShardIteratorType"] = "AT_SEQUENCE_NUMBER" if verify else "AFTER_SEQUENCE_NUMBER"
            expected = sequence if verify else None
        else:
            raise KinesisSourceError(f"{self._where(shard_id)}: cannot start an iterator at {position}")
        try:
            answer = self._call(
                lambda: self.client.get_shard_iterator(**kwargs), f"GetShardIterator {self._where(shard_id)}"
            )
        except ClientError as e:
            code = error_code(e)
            if code == "ResourceNotFoundException":
                self._require_stream()
                self._data_loss(f"{self._where(shard_id)} no longer exists; read only to {position}")
                return None, None
            if code == "InvalidArgumentException" and sequence is not None:
                raise KinesisSourceError(
                    f"{self._where(shard_id)}: the checkpointed sequence number {sequence} is not valid "
                    f"for this shard (was the stream deleted and re-created?): {e}"
                ) from e
            raise
        return answer.get("ShardIterator"), expected

    def _replay_shard(
        self, shard_id: str, position: str, start_timestamp_ms: int | None, until: str
    ) -> ShardRead:
        """Read one shard from ``position`` to the batch's end ``until`` (a sequence number, included, or
        ``SHARD_END``): anything short of it is a gap."""
        cursor = self._open(shard_id, position, start_timestamp_ms, replay=True)
        until_sequence = sequence_of(until)
        idle_polls = 0
        while not cursor.done and cursor.state.pacer.wait():
            page = self._next_page(cursor, MAX_RECORDS_PER_CALL)
            if page is None:
                continue  # the iterator had expired: renewed
            records = page.records if until_sequence is None else self._up_to(cursor, page, until_sequence)
            if not self._take(cursor, page, records, expand(records)):
                break
            if not page.caught_up:
                continue
            if until != SHARD_END:
                self._data_loss(
                    f"{self._where(shard_id)}: the batch's last record {until_sequence} is no longer in "
                    "the shard while replaying"
                )
                break
            idle_polls = 0 if page.records else idle_polls + 1
            if idle_polls >= MAX_IDLE_POLLS_TO_SHARD_END:
                raise KinesisSourceError(
                    f"{self._where(shard_id)}: replaying a batch that read this shard to its end, but "
                    f"the shard still reports no end after {idle_polls} polls"
                )
        self._close(cursor)
        return cursor.read

    def _open(self, shard_id: str, position: str, start_timestamp_ms: int | None, *, replay: bool) -> _Cursor:
        """A cursor at ``position``: a fetch takes the iterator the last fetch kept, if it is still
        there and fresh; anything else gets a fresh iterator."""
        state = self._state(shard_id)
        cursor = _Cursor(shard_id, state, ShardRead(shard_id, position, []), start_timestamp_ms, replay)
        cached, state.cached = state.cached, None
        if (
            not replay
            and cached is not None
            and cached.position == position
            and self._wall() - cached.created < ITERATOR_TTL
        ):
            cursor.iterator = cached.iterator
        else:
            self._renew(cursor)
        return cursor

    def _renew(self, cursor: _Cursor) -> None:
        """A fresh iterator at the cursor's position, checked against the checkpoint unless this source
        read on from there without a gap lately (fetches only). A shard that is gone is done."""
        state, at = cursor.state, cursor.read.position
        trusted = (
            not cursor.replay
            and state.verified is not None
            and state.verified[0] == at
            and self._wall() - state.verified[1] < VERIFIED_TTL
        )
        start_ms = cursor.start_timestamp_ms
        iterator, expected = self._iterator(cursor.shard_id, at, start_ms, verify=not trusted)
        cursor.expected = cursor.expected or expected
        if iterator is None:  # the shard is gone (and that loss is allowed): it is done
            cursor.read.position = SHARD_END
            cursor.done, cursor.reusable = True, False
        else:
            cursor.iterator = iterator

    def _records_per_call(self, state: _ShardState) -> int:
        """What the shard may deliver in one call slot (2 MB/s / 5 calls = 400 KB): as fast as Kinesis
        allows, and small answers keep Kinesis busy while this side parses."""
        per_slot = self.settings.read_bytes_per_second / self.settings.get_records_per_second
        if per_slot <= 0:
            return MAX_RECORDS_PER_CALL
        return max(MIN_RECORDS_PER_CALL, min(MAX_RECORDS_PER_CALL, math.ceil(per_slot / state.record_bytes)))

    def _next_page(self, cursor: _Cursor, limit: int, budget: Budget | None = None) -> _Page | None:
        """One GetRecords call for at most ``limit`` records, the checkpointed record checked and dropped;
        ``None`` when the iterator had expired (it is renewed, or the cursor is done). A failed call gives
        its ``limit`` back to ``budget``."""
        state = cursor.state
        try:
            answer = self._call(  # every attempt, a retry too, waits for its turn on the shard
                lambda it=cursor.iterator, n=limit: state.pacer.call(
                    lambda: self.client.get_records(ShardIterator=it, Limit=n), _returned_bytes
                ),
                f"GetRecords {self._where(cursor.shard_id)}",
            )
        except ClientError as e:
            if budget is not None:
                budget.settle(limit)
            if error_code(e) != "ExpiredIteratorException":
                raise
            self._renew(cursor)
            return None
        cursor.read.calls += 1
        records = answer.get("Records", [])
        if records:
            state.record_bytes = 0.5 * state.record_bytes + 0.5 * _returned_bytes(answer) / len(records)
        next_iterator = answer.get("NextShardIterator")
        caught_up = answer.get("MillisBehindLatest", 0) == 0 and len(records) < limit
        records = self._after_checkpoint(cursor, records, at_end=next_iterator is None or caught_up)
        return _Page(records, next_iterator, caught_up)

    def _after_checkpoint(self, cursor: _Cursor, records: list[Any], *, at_end: bool) -> list[Any]:
        """The first answer after a checked resume starts with the checkpointed record: drop it. When it
        is missing, records after the checkpoint may have expired unread."""
        expected = cursor.expected
        if expected is None:
            return records
        if records:
            if records[0]["SequenceNumber"] == expected:
                records = records[1:]
            else:
                self._data_loss(
                    f"{self._where(cursor.shard_id)}: the checkpointed record {expected} has expired and "
                    f"the oldest record left is {records[0]['SequenceNumber']}; records between them "
                    "may have expired unread"
                )
            cursor.expected = None
        elif at_end:
            self._data_loss(
                f"{self._where(cursor.shard_id)}: the checkpointed record {expected} has expired; "
                "records after it may have expired unread"
            )
            cursor.expected = None
        return records

    def _up_to(self, cursor: _Cursor, page: _Page, until_sequence: str) -> list[Any]:
        """The page's records up to the batch's last record ``until_sequence``, included; finding a later
        one instead means it expired."""
        until_number = int(until_sequence)
        for index, record in enumerate(page.records):
            number = int(record["SequenceNumber"])
            if number < until_number:
                continue
            page.reached = True
            if number == until_number:
                return page.records[: index + 1]
            self._data_loss(
                f"{self._where(cursor.shard_id)}: the batch's last record {until_sequence} has "
                f"expired (found {record['SequenceNumber']} after it) while replaying"
            )
            return page.records[:index]
        return page.records

    def _take(self, cursor: _Cursor, page: _Page, records: list[Any], expanded: list[Any]) -> bool:
        """Add ``records`` (the first of the page's) to the read; whether the read may go on."""
        read = cursor.read
        if records:
            read.batches.append(to_record_batch(self.settings.stream, records, expanded))
            read.rows += sum(row_count(u) for u in expanded)
            read.position = after(records[-1]["SequenceNumber"])
        if len(records) < len(page.records) or page.reached:
            cursor.reusable = False  # the iterator is past records this read did not take
            return False
        if page.next_iterator is None:
            read.position = SHARD_END
            cursor.reusable = False
            return False
        cursor.iterator = page.next_iterator
        return True

    def _close(self, cursor: _Cursor) -> None:
        """Keep a fetch's iterator for the next fetch; note a position reached without a gap."""
        read, state = cursor.read, cursor.state
        if cursor.reusable and not cursor.replay and cursor.expected is None:
            state.cached = _CachedIterator(read.position, cursor.iterator, self._wall())
        if read.position != SHARD_END and cursor.expected is None:  # checked, or trusted: no gap up to here
            state.verified = (read.position, self._wall())
