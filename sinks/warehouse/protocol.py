"""The load protocol, shared by every SQL backend; each backend supplies only what differs.

:class:`SqlWarehouse` applies a staged batch over a DB-API connection in ONE transaction, with the SQL of
:mod:`sinks.warehouse.sql` in the backend's dialect:

1. keep two writers of one batch apart, before anything is read (the backend's ``_serialize``:
   PostgreSQL takes an advisory lock keyed by ``(query, batch_id)``, Redshift locks the ledger table;
   DuckDB has one writing process);
2. skip if the ledger holds ``(query, batch_id)``;
3. fill a temporary staging table shaped like the target (the backend's bulk-load step, ``_stage``);
4. if a key occurs twice, keep its newest row (MERGE takes one source row per target row); MERGE into the
   target; stage and MERGE the batch's daily unique-viewer rows (if any) into their rollup table; insert
   the ledger row with the batch's watermark; COMMIT;
5. delete the batch's staged objects when they are on S3 (local ones are the sink's).

A failure the backend says rejects the batch's data (``_rejects_rows``: a value too long for its column,
a violated constraint) is not retried: :class:`RejectedRowsError` names the batch and the rows the
warehouse reported, and the app stops (a replay would fail the same way).

Failures the backend calls worth another try (``_retry_reason``: serialization failures, dropped or
refused connections) are retried (tenacity) with capped, jittered exponential backoff, reconnecting when
the connection is gone. A load keeps trying for up to ``warehouse.max_outage`` (a warehouse outage
pauses the stream: the micro-batch waits in ``foreachBatch``), logging each failed attempt with the time
left; every other operation gives up after ``max_attempts``. Then :class:`WarehouseError`.

:class:`ServerWarehouse` adds what a shared database server (PostgreSQL, Redshift) has besides: the
content dimension and ``check`` against its catalog. Every backend has the analyst views and reports of
:mod:`sinks.warehouse.analytics`.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
    wait_random_exponential,
)

from sinks.warehouse import analytics, sql
from sinks.warehouse.base import (
    DAILY,
    RejectedRowsError,
    StagedBatch,
    Warehouse,
    WarehouseError,
    WarehouseMissingError,
)
from sinks.warehouse.catalog import ColumnDef, expected_tables
from sinks.warehouse.staging import is_s3_url

if TYPE_CHECKING:
    import pyarrow as pa

    from streaming.config import WarehouseConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_RETRY_BASE_DELAY = 0.2
DEFAULT_RETRY_MAX_DELAY = 5.0
DEFAULT_MAX_OUTAGE = timedelta(minutes=30)


class _Retry(Exception):
    """One attempt failed in a way worth another: ``reason`` is ``serialization``, ``disconnect`` or
    ``contended``; ``error`` is the driver's exception (None when contended)."""

    def __init__(self, reason: str, error: BaseException | None = None, connecting: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error
        self.connecting = connecting

    def describe(self) -> str:
        what = "cannot connect" if self.connecting else self.reason
        return what if self.error is None else f"{what} ({_one_line(self.error)})"


class Contended(_Retry):
    """Another session was applying the same batch; start a fresh transaction (and see its ledger row)."""

    def __init__(self) -> None:
        super().__init__("contended")


@dataclass(frozen=True)
class RetryPolicy:
    """Waits double from ``base_delay`` up to ``max_delay`` (half of each wait fixed, half random); a load
    keeps trying for up to ``max_outage``, any other operation for at most ``max_attempts`` tries."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    base_delay: float = DEFAULT_RETRY_BASE_DELAY
    max_delay: float = DEFAULT_RETRY_MAX_DELAY
    max_outage: timedelta = DEFAULT_MAX_OUTAGE

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise WarehouseError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise WarehouseError("retry delays must not be negative")
        if self.max_outage <= timedelta(0):
            raise WarehouseError(f"max_outage must be positive, not {self.max_outage}")

    def backoff(self, state: RetryCallState) -> float:
        """The wait after a failed attempt: uniform between half and all of min(max, base * 2^(n-1))."""
        half_base, half_cap = self.base_delay / 2, self.max_delay / 2
        fixed = wait_exponential(multiplier=half_base, max=half_cap)
        jitter = wait_random_exponential(multiplier=half_base, max=half_cap)
        return fixed(state) + jitter(state)

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> RetryPolicy:
        """``max_attempts=5&retry_base_ms=200&retry_max_ms=5000`` from a warehouse URL."""
        try:
            return cls(
                max_attempts=int(params.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
                base_delay=float(params.get("retry_base_ms", DEFAULT_RETRY_BASE_DELAY * 1000)) / 1000,
                max_delay=float(params.get("retry_max_ms", DEFAULT_RETRY_MAX_DELAY * 1000)) / 1000,
            )
        except ValueError as e:
            raise WarehouseError(f"invalid retry setting in the warehouse URL: {e}") from e


def with_max_outage(policy: RetryPolicy, cfg: WarehouseConfig) -> RetryPolicy:
    """``policy`` (from the URL) with the load's time budget from ``warehouse.max_outage``."""
    return replace(policy, max_outage=cfg.max_outage)


def _duration(seconds: float) -> str:
    """``'29 min 41 s'``, ``'4.2 s'``: a time span for a log line."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class SqlWarehouse(Warehouse):
    """The load protocol over a DB-API connection (autocommit, ``%s`` parameters) in ``dialect``."""

    dialect: sql.Dialect
    location = "the warehouse"  # for messages: where the tables were looked for

    def __init__(self, tables: sql.Tables, retry: RetryPolicy | None = None) -> None:
        self.tables = tables
        self.table = tables.table
        self.ledger_table = tables.ledger
        self.retry = retry or RetryPolicy()
        self._conn: Any = None

    # --- what a backend provides ---------------------------------------------------------------

    @abstractmethod
    def _connect(self) -> Any:
        """A new DB-API connection."""

    @abstractmethod
    def _retry_reason(self, error: BaseException) -> str | None:
        """``"serialization"`` or ``"disconnect"`` when ``error`` is worth another attempt, else None."""

    @abstractmethod
    def _stage(self, cur: Any, batch: StagedBatch, prepared: Any, stage: str = sql.STAGE_TABLE) -> None:
        """Fill the staging table ``stage`` with the batch's rows: :data:`sql.STAGE_TABLE` from
        ``batch.files``, :data:`sql.STAGE_VIEWERS_TABLE` from ``batch.viewers_files``."""

    def _prepare(self, batch: StagedBatch) -> Any:
        """Work outside the transaction, once per load (e.g. write a COPY manifest)."""
        return None

    def _serialize(self, cur: Any, batch: StagedBatch) -> None:
        """Keep two writers of the same batch apart (first statement of the transaction)."""

    def _delete_staging(self, uri: str) -> None:
        """Delete every object under the ``s3://`` staging prefix ``uri`` (one attempt's files)."""

    def _rejects_rows(self, error: BaseException) -> bool:
        """Whether ``error`` rejects the batch's data, so that every replay of it would fail the same way."""
        return False

    def _rejected_rows(self, error: BaseException, batch: StagedBatch) -> list[str]:
        """What ``error`` (see :meth:`_rejects_rows`) says about the rows rejected, one line each."""
        return []

    def _load_failed(self, error: WarehouseError, batch: StagedBatch) -> WarehouseError | None:
        """A more telling error for a load that failed for good, or None."""
        return None

    def _is_missing_table(self, error: BaseException) -> bool:
        """Whether ``error`` says a table or view does not exist (SQLSTATE 42P01)."""
        return False

    # --- connection and retries ----------------------------------------------------------------

    def _cursor(self) -> Any:
        if self._conn is not None:
            return self._conn.cursor()
        conn = self._connect()
        try:
            conn.autocommit = True  # transactions are explicit: BEGIN … COMMIT
            cur = conn.cursor()
            for statement in sql.session_sql(self.tables.schema, self.dialect):
                cur.execute(statement)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return cur

    def _discard_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as e:  # the connection is already gone; nothing to release
                log.debug("closing a dropped connection failed: %s", e)

    def _rollback(self, cur: Any) -> None:
        try:
            cur.execute(sql.ROLLBACK_SQL)
        except Exception as e:  # a dropped connection rolls back by itself
            log.debug("rollback failed (connection lost?): %s", e)

    def _attempt(self, what: str, work: Callable[[Any], T]) -> T:
        """One try of ``work(cursor)``; a failure worth another try is raised as :class:`_Retry`."""
        connecting = True
        try:
            cur = self._cursor()
            connecting = False
            return work(cur)
        except (_Retry, WarehouseError):
            raise
        except Exception as e:
            reason = self._retry_reason(e)
            if reason is None and self._rejects_rows(e):
                raise RejectedRowsError(f"{what} failed: {_one_line(e)}") from e
            if reason is None:
                raise WarehouseError(f"{what} failed: {_one_line(e)}") from e
            if reason == "disconnect":
                self._discard_connection()
            raise _Retry(reason, e, connecting) from e

    def _run(self, what: str, work: Callable[[Any], T], *, outage: bool = False) -> T:
        """Run ``work(cursor)``, retrying serialization failures, contention and lost connections.

        With ``outage`` (a batch load) the attempts go on for up to ``max_outage`` and each failed one is
        logged with the time left; otherwise at most ``max_attempts`` tries are made.
        """
        policy = self.retry
        budget = policy.max_outage.total_seconds()

        def wait(state: RetryCallState) -> float:
            failure = state.outcome.exception() if state.outcome else None
            return 0.0 if isinstance(failure, Contended) else policy.backoff(state)

        def log_attempt(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome else None
            assert isinstance(failure, _Retry) and state.next_action is not None
            pause = state.next_action.sleep
            if isinstance(failure, Contended):
                log.info("%s: another writer holds this batch; trying again after it", what)
            elif outage:
                left = max(0.0, budget - (state.seconds_since_start or 0.0))
                log.warning(
                    "%s: %s; attempt %d failed, next in %.1f s, %s left of warehouse.max_outage",
                    what,
                    failure.describe(),
                    state.attempt_number,
                    pause,
                    _duration(left),
                )
            else:
                # A failed (re)connect is reported once, by the final error; a dropped connection or a
                # conflict inside the work is worth a warning each time.
                log.log(
                    logging.DEBUG if failure.connecting else logging.WARNING,
                    "%s: %s, attempt %d of %d; retrying in %.2f s",
                    what,
                    failure.describe(),
                    state.attempt_number,
                    policy.max_attempts,
                    pause,
                )

        retrying = Retrying(
            retry=retry_if_exception_type(_Retry),
            stop=stop_before_delay(budget) if outage else stop_after_attempt(policy.max_attempts),
            wait=wait,
            before_sleep=log_attempt,
            reraise=True,
        )
        try:
            return retrying(self._attempt, what, work)
        except _Retry as failure:
            attempts = retrying.statistics.get("attempt_number", 1)
            if isinstance(failure, Contended):
                raise WarehouseError(f"{what}: batch still locked after {attempts} attempts") from None
            if outage:
                elapsed = retrying.statistics.get("delay_since_first_attempt", 0.0)
                raise WarehouseError(
                    f"{what}: gave up after {_duration(elapsed)} and {attempts} attempts "
                    f"(warehouse.max_outage is {_duration(budget)}); last failure: {failure.describe()}"
                ) from failure.error
            raise WarehouseError(
                f"{what} failed after {attempts} attempts: {_one_line(failure.error or failure)}"
            ) from failure.error

    def _transaction(self, cur: Any, body: Callable[[Any], T]) -> T:
        cur.execute(sql.begin_sql(self.dialect))
        try:
            result = body(cur)
        except BaseException:
            self._rollback(cur)
            raise
        cur.execute(sql.COMMIT_SQL)
        return result

    # --- the Warehouse interface ---------------------------------------------------------------

    def init(self) -> None:
        def create(cur: Any) -> None:
            for statement in sql.init_sql(self.tables, self.dialect):
                cur.execute(statement)

        self._run("warehouse init", lambda cur: self._transaction(cur, create))

    def load_batch(self, batch: StagedBatch) -> bool:
        sql.validate_query_name(batch.query)
        prepared = self._prepare(batch)
        what = f"load of {batch.query} batch {batch.batch_id}"

        def load(cur: Any) -> bool:
            self._serialize(cur, batch)
            cur.execute(sql.ledger_lookup_sql(self.ledger_table), (batch.query, batch.batch_id))
            if cur.fetchone() is not None:
                return False
            for statement in sql.stage_sql(self.table, self.dialect):
                cur.execute(statement)
            self._stage(cur, batch, prepared)
            cur.execute(sql.stage_count_sql())
            rows = int(cur.fetchone()[0])
            cur.execute(sql.duplicate_keys_sql())
            source = sql.STAGE_TABLE
            if int(cur.fetchone()[0]):  # MERGE takes at most one source row per target row
                cur.execute(sql.dedup_stage_sql())
                source = sql.STAGE_DEDUP_TABLE
            cur.execute(sql.merge_sql(self.table, source))
            if batch.viewers_files:
                daily = self.tables.daily
                for statement in sql.stage_sql(daily, self.dialect, (sql.STAGE_VIEWERS_TABLE,)):
                    cur.execute(statement)
                self._stage(cur, batch, prepared, sql.STAGE_VIEWERS_TABLE)
                cur.execute(sql.merge_sql(daily, sql.STAGE_VIEWERS_TABLE, DAILY.key, DAILY.names()))
            committed_at = datetime.now(UTC).replace(tzinfo=None)
            cur.execute(
                sql.ledger_insert_sql(self.ledger_table),
                (batch.query, batch.batch_id, rows, committed_at, batch.watermark),
            )
            return True

        try:
            applied = self._run(what, lambda cur: self._transaction(cur, load), outage=True)
        except RejectedRowsError as e:
            raise self._rejection(e, batch) from e.__cause__
        except WarehouseError as e:
            better = self._load_failed(e, batch)
            if better is not None:
                raise better from e
            raise
        if applied:
            log.info("%s applied", what)
        else:
            log.info("%s already in the ledger; skipped", what)
        self._after_load(batch)
        return applied

    def _rejection(self, error: RejectedRowsError, batch: StagedBatch) -> RejectedRowsError:
        """``error`` with the rows the warehouse rejected, and what happens now."""
        rows = self._rejected_rows(error.__cause__, batch) if error.__cause__ is not None else []
        listing = "\n".join(f"  {line}" for line in rows) or "  (the warehouse named none)"
        return RejectedRowsError(
            f"{error}\nthe warehouse rejects rows of {batch.query} batch {batch.batch_id} (staged at "
            f"{batch.uri}): every replay would fail the same way, so the batch is not retried; fix the "
            f"data or the table and start the app again\nrejected rows:\n{listing}"
        )

    def _after_load(self, batch: StagedBatch) -> None:
        """The batch is in the warehouse (committed now, or earlier): its staged objects on S3 go.

        A local staging folder is the sink's to remove. A failure here is logged, not raised: the
        batch is committed, and the bucket's lifecycle rule removes what is left.
        """
        if not is_s3_url(batch.uri):
            return
        try:
            self._delete_staging(batch.uri)
            log.debug("deleted the staging objects under %s", batch.uri)
        except Exception as e:  # botocore / pyarrow errors: the load itself succeeded
            log.warning("could not delete staging objects under %s: %s", batch.uri, e)

    def committed(self, query: str) -> list[int]:
        def read(cur: Any) -> list[int]:
            cur.execute(sql.committed_sql(self.ledger_table), (query,))
            return [int(row[0]) for row in cur.fetchall()]

        return self._run(f"ledger read of {query}", read)

    def top(
        self, where: analytics.Slice, by: str = "impressions", limit: int = 10, min_impressions: int = 0
    ) -> analytics.Report:
        statement, params = analytics.top_sql(self.tables.names(), where, by, limit, min_impressions)
        return self._report(f"top content by {by}", statement, params, analytics.TOP_COLUMNS)

    def rank(
        self, where: analytics.Slice, by: analytics.Ranking = "ctr", limit: int = 20, min_volume: int = 100
    ) -> analytics.Report:
        statement, params = analytics.rank_sql(self.tables.names(), where, by, limit, min_volume)
        return self._report(f"ranking by {by}", statement, params, analytics.RANK_COLUMNS)

    def read_view(self, query: analytics.ViewQuery) -> analytics.Report:
        return self._report(query.what, query.statement, list(query.params), query.columns)

    def _report(
        self, what: str, statement: str, params: list[Any], columns: tuple[str, ...]
    ) -> analytics.Report:
        """Rows of a report read from the views (a missing view: the warehouse was never initialised)."""
        rendered = analytics.render(statement, self.dialect)
        try:
            rows = self.fetch(rendered, tuple(params) or None, what)
        except WarehouseError as e:
            if e.__cause__ is not None and self._is_missing_table(e.__cause__):
                raise WarehouseMissingError(
                    f"{self.location} has no analyst views: run `mediapulse warehouse init` (or the pipeline)"
                ) from e
            raise
        return analytics.Report(columns, rows)

    def fetch(
        self, statement: str, params: tuple[Any, ...] | None = None, what: str = "read"
    ) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement (with the same retries as a load)."""

        def read(cur: Any) -> list[tuple[Any, ...]]:
            cur.execute(statement, params)
            return [tuple(row) for row in cur.fetchall()]

        return self._run(what, read)

    def close(self) -> None:
        self._discard_connection()


class ServerWarehouse(SqlWarehouse):
    """A warehouse on a shared database server (PostgreSQL, Redshift): the load protocol, and the content
    dimension, the analyst views and a check of the definitions against the server's catalog."""

    @abstractmethod
    def _insert_dim_rows(self, cur: Any, table: pa.Table) -> None:
        """Insert ``table``'s rows into the (emptied) content dimension, inside the transaction."""

    @abstractmethod
    def _table_problems(self, table: str, expected: list[ColumnDef]) -> list[str]:
        """How ``table`` as the catalog describes it differs from ``expected`` (empty when it matches)."""

    def replace_content_dim(self, table: pa.Table) -> int:
        """Replace every row of the content dimension with ``table``, in one transaction."""
        delete, _ = sql.replace_dim_sql(self.tables.content_dim)

        def replace(cur: Any) -> int:
            cur.execute(delete)
            self._insert_dim_rows(cur, table)
            return table.num_rows

        return self._run("content dimension sync", lambda cur: self._transaction(cur, replace))

    def sync_content_dim(self, read: Callable[[], pa.Table]) -> int:
        return self.replace_content_dim(read())

    def check(self) -> list[str]:
        problems = []
        for table, expected in expected_tables(self.tables, self.dialect).items():
            problems += self._table_problems(table, expected)
        present = {row[0] for row in self.fetch(sql.VIEWS_SQL, (self.tables.schema,))}
        missing = [name for name in analytics.VIEW_NAMES if name not in present]
        return problems + [f"{self.tables.view(name)}: view is missing" for name in missing]


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
