"""PostgreSQL warehouse (psycopg 3), and the load protocol it shares with Redshift.

URL: ``postgresql://user@host:port/db?schema=analytics``. The password comes only from the environment
(``MEDIAPULSE_WAREHOUSE_PASSWORD``, else ``PGPASSWORD``), never from the URL or a file (``~/.pgpass`` is
not read either). TLS: ``sslmode`` defaults to ``verify-full`` for any host but a loopback one
(``sslrootcert=`` names the CA bundle, or ``system``).

:class:`SqlWarehouse` holds the protocol of :mod:`sinks.warehouse.base` for engines that speak the
PostgreSQL wire protocol; its subclasses say how to connect, how to fill the staging table, and which
errors are worth another attempt. One load is one transaction (``SERIALIZABLE`` on PostgreSQL; the
database's level on Redshift):

1. keep two writers of one batch apart, before anything is read: PostgreSQL takes a transaction-level
   advisory lock keyed by ``(query, batch_id)``, Redshift locks the ledger table;
2. skip if the ledger holds ``(query, batch_id)``;
3. fill a temporary staging table (here ``COPY … FROM STDIN`` streamed from the Parquet files);
4. if a key occurs twice, keep its newest row (MERGE takes one source row per target row); MERGE into the
   target; insert the ledger row; COMMIT;
5. delete the batch's staged objects when they are on S3 (local ones are the sink's).

Serialization failures and dropped or refused connections are retried (tenacity) with capped, jittered
exponential backoff, reconnecting when the connection is gone. A load keeps trying for up to
``warehouse.max_outage`` (a warehouse outage pauses the stream: the micro-batch waits in ``foreachBatch``),
logging each failed attempt with the time left; every other operation gives up after ``max_attempts``.
Then :class:`WarehouseError`.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import logging
import os
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, unquote, urlparse

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from psycopg import errors as pg_errors
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
    wait_random_exponential,
)

from sinks.warehouse import sql
from sinks.warehouse.base import (
    COLUMN_NAMES,
    StagedBatch,
    TopRow,
    Warehouse,
    WarehouseError,
    WarehouseMissingError,
    validate_identifier,
)

if TYPE_CHECKING:
    from streaming.config import WarehouseConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

PASSWORD_ENV_VARS: tuple[str, ...] = ("MEDIAPULSE_WAREHOUSE_PASSWORD", "PGPASSWORD")
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_RETRY_BASE_DELAY = 0.2
DEFAULT_RETRY_MAX_DELAY = 5.0
DEFAULT_MAX_OUTAGE = timedelta(minutes=30)
PG_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_ARROW_BATCH_ROWS = 65_536


# ------------------------------------------------------------------------------ staged Parquet files


def _s3_endpoint(environ: Mapping[str, str]) -> str | None:
    return environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or None


def s3_filesystem(environ: Mapping[str, str] | None = None) -> pafs.S3FileSystem:
    """pyarrow's S3 client with the default AWS credential chain; honours ``AWS_ENDPOINT_URL[_S3]``."""

    env = os.environ if environ is None else environ
    options: dict[str, Any] = {}
    endpoint = _s3_endpoint(env)
    if endpoint:
        parsed = urlparse(endpoint)
        options["endpoint_override"] = parsed.netloc or parsed.path
        options["scheme"] = parsed.scheme or "https"
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        options["region"] = region
    return pafs.S3FileSystem(**options)


def is_s3_url(url: str) -> bool:
    return url.startswith(("s3://", "s3a://", "s3n://"))


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` (also ``s3a://``, ``s3n://``) → ``(bucket, key)``."""
    parsed = urlparse(url)
    if parsed.scheme not in ("s3", "s3a", "s3n") or not parsed.netloc:
        raise WarehouseError(f"not an S3 URL: {url!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def _open_parquet(uri: str, s3: pafs.FileSystem | None) -> pq.ParquetFile:

    parsed = urlparse(uri)
    if parsed.scheme in ("s3", "s3a", "s3n"):
        bucket, key = split_s3_url(uri)
        fs = s3 if s3 is not None else s3_filesystem()
        return pq.ParquetFile(fs.open_input_file(f"{bucket}/{key}"))
    if parsed.scheme == "file":
        return pq.ParquetFile(unquote(parsed.path))
    if parsed.scheme:
        raise WarehouseError(f"cannot read staged file {uri!r}: scheme {parsed.scheme!r} is not supported")
    return pq.ParquetFile(uri)


def to_warehouse_types(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Timestamps as naive UTC (the warehouse columns are TIMESTAMP without time zone)."""

    columns = []
    for column in batch.columns:
        if pa.types.is_timestamp(column.type) and column.type.tz is not None:
            column = column.cast(pa.timestamp(column.type.unit))
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def iter_record_batches(
    files: Iterable[str],
    columns: tuple[str, ...] = COLUMN_NAMES,
    s3: pafs.FileSystem | None = None,
    batch_rows: int = _ARROW_BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """Stream the staged Parquet files as Arrow record batches holding ``columns`` in that order."""

    for uri in files:
        try:
            parquet = _open_parquet(uri, s3)
            missing = [c for c in columns if c not in parquet.schema_arrow.names]
            if missing:
                raise WarehouseError(f"staged file {uri} lacks column(s) {', '.join(missing)}")
            for batch in parquet.iter_batches(batch_size=batch_rows, columns=list(columns)):
                yield to_warehouse_types(batch.select(list(columns)))
        except (OSError, pa.ArrowException) as e:
            raise WarehouseError(f"cannot read staged file {uri}: {e}") from e


def iter_csv_chunks(batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
    """Render record batches as CSV (no header) for ``COPY … (FORMAT csv)``: Arrow-native, no per-row Python.

    NULL is an unquoted empty field and every string is quoted, so an empty string stays an empty string.
    """

    options = pacsv.WriteOptions(include_header=False)
    for batch in batches:
        if batch.num_rows == 0:
            continue
        sink = io.BytesIO()
        pacsv.write_csv(batch, sink, options)
        yield sink.getvalue()


# -------------------------------------------------------------------------------------- the protocol


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


class _Contended(_Retry):
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
    """The load protocol over a DB-API connection that speaks PostgreSQL's SQL and wire protocol."""

    dialect: sql.Dialect

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
    def _stage(self, cur: Any, batch: StagedBatch, prepared: Any) -> None:
        """Fill :data:`sql.STAGE_TABLE` with the batch's rows."""

    def _prepare(self, batch: StagedBatch) -> Any:
        """Work outside the transaction, once per load (e.g. write a COPY manifest)."""
        return None

    def _serialize(self, cur: Any, batch: StagedBatch) -> None:
        """Keep two writers of the same batch apart (first statement of the transaction)."""

    def _delete_staging(self, uri: str) -> None:
        """Delete every object under the ``s3://`` staging prefix ``uri`` (one attempt's files)."""

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
            for statement in sql.session_sql(self.tables.schema):
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
            return 0.0 if isinstance(failure, _Contended) else policy.backoff(state)

        def log_attempt(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome else None
            assert isinstance(failure, _Retry) and state.next_action is not None
            pause = state.next_action.sleep
            if isinstance(failure, _Contended):
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
            if isinstance(failure, _Contended):
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
            for statement in sql.stage_sql(self.table):
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
            committed_at = datetime.now(UTC).replace(tzinfo=None)
            cur.execute(
                sql.ledger_insert_sql(self.ledger_table), (batch.query, batch.batch_id, rows, committed_at)
            )
            return True

        try:
            applied = self._run(what, lambda cur: self._transaction(cur, load), outage=True)
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

    def top(self, by: str = "impressions", limit: int = 10) -> list[TopRow]:
        statement = sql.top_sql(self.table, by, limit)

        def read(cur: Any) -> list[TopRow]:
            cur.execute(statement)
            return [_top_row(row) for row in cur.fetchall()]

        try:
            return self._run(f"top content by {by}", read)
        except WarehouseError as e:
            if e.__cause__ is not None and self._is_missing_table(e.__cause__):
                raise WarehouseMissingError(f"the warehouse has no table {self.table}") from e
            raise

    def fetch(
        self, statement: str, params: tuple[Any, ...] | None = None, what: str = "read"
    ) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement (with the same retries as a load)."""

        def read(cur: Any) -> list[tuple[Any, ...]]:
            cur.execute(statement, params)
            return [tuple(row) for row in cur.fetchall()]

        return self._run(what, read)

    def replace_content_dim(self, table: pa.Table) -> int:
        """Replace every row of the content dimension with ``table``, in one transaction."""
        delete, _ = sql.replace_dim_sql(self.tables.content_dim)

        def replace(cur: Any) -> int:
            cur.execute(delete)
            self._insert_dim_rows(cur, table)
            return table.num_rows

        return self._run("content dimension sync", lambda cur: self._transaction(cur, replace))

    @abstractmethod
    def _insert_dim_rows(self, cur: Any, table: pa.Table) -> None: ...

    def close(self) -> None:
        self._discard_connection()


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _top_row(row: tuple[Any, ...]) -> TopRow:
    def whole(value: Any) -> int:
        return int(value) if value is not None else 0

    def ratio(value: Any) -> float | None:
        return float(value) if value is not None else None

    content_id, title, *sums, ctr, completion_rate = row
    return TopRow(content_id, title, *(whole(v) for v in sums), ratio(ctr), ratio(completion_rate))


def advisory_key(query: str, batch_id: int) -> int:
    """A stable signed 64-bit key for ``pg_advisory_xact_lock`` from ``(query, batch_id)``."""
    digest = hashlib.blake2b(f"{query}\x00{batch_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# ------------------------------------------------------------------------------------------ PostgreSQL


@dataclass(frozen=True)
class PostgresSettings:
    host: str
    port: int
    database: str
    user: str
    schema: str = "public"
    sslmode: str | None = None
    sslrootcert: str | None = None
    connect_timeout: int = 10
    retry: RetryPolicy = RetryPolicy()


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1): traffic that never leaves the machine."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_postgres_url(url: str) -> PostgresSettings:
    """``postgresql://user@host:port/db?schema=…&sslmode=…&max_attempts=…``; a password here is refused.

    TLS: ``sslmode`` defaults to ``verify-full`` (encrypted, certificate and host name checked) for any
    host but a loopback one, where libpq's own default applies; ``sslrootcert`` names the CA bundle
    (a file, or ``system`` for the system's trust store).
    """
    parsed = urlparse(url)
    if parsed.scheme != "postgresql":
        raise WarehouseError(f"not a postgresql:// URL: {url!r}")
    if parsed.password is not None:
        raise WarehouseError(
            "warehouse.url must not carry a password: set MEDIAPULSE_WAREHOUSE_PASSWORD or PGPASSWORD"
        )
    params = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    known = {
        "schema",
        "sslmode",
        "sslrootcert",
        "connect_timeout",
        "max_attempts",
        "retry_base_ms",
        "retry_max_ms",
    }
    unknown = sorted(set(params) - known)
    if unknown:
        raise WarehouseError(f"unknown warehouse URL parameter(s): {', '.join(unknown)}")
    database = unquote(parsed.path.lstrip("/"))
    if not parsed.hostname or not database or not parsed.username:
        raise WarehouseError(
            f"warehouse.url {url!r} needs user, host and database: postgresql://user@host:5432/db"
        )
    try:
        port = parsed.port or 5432
        timeout = int(params.get("connect_timeout", 10))
    except ValueError as e:
        raise WarehouseError(f"invalid port or connect_timeout in warehouse.url: {e}") from e
    sslmode = params.get("sslmode") or (None if is_loopback(parsed.hostname) else "verify-full")
    if sslmode is not None and sslmode not in PG_SSL_MODES:
        raise WarehouseError(
            f"warehouse.url: sslmode must be one of {', '.join(PG_SSL_MODES)}, not {sslmode!r}"
        )
    return PostgresSettings(
        host=parsed.hostname,
        port=port,
        database=database,
        user=unquote(parsed.username),
        schema=validate_identifier(params.get("schema", "public"), "schema"),
        sslmode=sslmode,
        sslrootcert=params.get("sslrootcert"),
        connect_timeout=timeout,
        retry=RetryPolicy.from_query(params),
    )


def password_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    for name in PASSWORD_ENV_VARS:
        if env.get(name):
            return env[name]
    return None


class PostgresWarehouse(SqlWarehouse):
    """PostgreSQL 15+ through psycopg 3; staging filled by ``COPY … FROM STDIN`` from the Parquet files."""

    dialect: sql.Dialect = "postgres"

    def __init__(
        self,
        settings: PostgresSettings,
        table: str = "content_engagement",
        ledger_table: str = "mediapulse_batches",
        password: str | None = None,
        s3: pafs.FileSystem | None = None,
    ) -> None:
        super().__init__(sql.Tables.of(settings.schema, table, ledger_table), settings.retry)
        self.settings = settings
        self._password = password
        self._s3 = s3

    @classmethod
    def from_config(cls, cfg: WarehouseConfig, environ: Mapping[str, str] | None = None) -> PostgresWarehouse:
        settings = parse_postgres_url(cfg.url)
        settings = replace(settings, retry=with_max_outage(settings.retry, cfg))
        return cls(settings, cfg.table, cfg.ledger_table, password=password_from_env(environ))

    def _connect(self) -> Any:
        s = self.settings
        options: dict[str, Any] = {
            "host": s.host,
            "port": s.port,
            "dbname": s.database,
            "user": s.user,
            # Never read ~/.pgpass (passwords come from the environment only): a path that cannot exist
            # anywhere, so libpq skips it silently (for /dev/null itself it warns "not a plain file").
            "passfile": os.path.join(os.devnull, "no-pgpass"),
            "application_name": "mediapulse",
            "connect_timeout": s.connect_timeout,
        }
        if self._password is not None:
            options["password"] = self._password
        if s.sslmode:
            options["sslmode"] = s.sslmode
        if s.sslrootcert:
            options["sslrootcert"] = s.sslrootcert
        return psycopg.connect(**options)

    def _is_missing_table(self, error: BaseException) -> bool:
        return isinstance(error, pg_errors.UndefinedTable)

    def _retry_reason(self, error: BaseException) -> str | None:
        if isinstance(error, pg_errors.SerializationFailure | pg_errors.DeadlockDetected):
            return "serialization"
        text = str(error).lower()
        if "authentication failed" in text or "no password supplied" in text:
            return None  # another try will not log in either
        if isinstance(error, psycopg.Error):
            state = error.sqlstate or ""
            if state.startswith("08") or state in ("57P01", "57P02", "57P03"):
                return "disconnect"
        if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
            conn = self._conn
            if conn is None or conn.closed or conn.broken:
                return "disconnect"
        return None

    def _serialize(self, cur: Any, batch: StagedBatch) -> None:
        # Taken before any read; if another session holds it, wait for it to finish, then start over in
        # a new transaction whose snapshot sees that session's ledger row.
        key = advisory_key(batch.query, batch.batch_id)
        cur.execute(sql.TRY_ADVISORY_LOCK_SQL, (key,))
        if not cur.fetchone()[0]:
            cur.execute(sql.ADVISORY_LOCK_SQL, (key,))
            raise _Contended

    def _stage(self, cur: Any, batch: StagedBatch, prepared: Any) -> None:
        copy_into(cur, sql.STAGE_TABLE, COLUMN_NAMES, iter_record_batches(batch.files, s3=self._s3_fs(batch)))

    def _s3_fs(self, batch: StagedBatch) -> pafs.FileSystem | None:
        if self._s3 is None and any(is_s3_url(f) for f in batch.files):
            self._s3 = s3_filesystem()
        return self._s3

    def _delete_staging(self, uri: str) -> None:
        fs = self._s3 if self._s3 is not None else s3_filesystem()
        bucket, prefix = split_s3_url(uri)
        fs.delete_dir(f"{bucket}/{prefix.rstrip('/')}")

    def _insert_dim_rows(self, cur: Any, table: pa.Table) -> None:
        names = tuple(name for name, _ in sql.CONTENT_DIM_COLUMNS)
        batches = (to_warehouse_types(b) for b in table.select(list(names)).to_batches())
        copy_into(cur, self.tables.content_dim, names, batches)


def copy_into(cur: Any, table: str, columns: tuple[str, ...], batches: Iterable[pa.RecordBatch]) -> None:
    """``COPY table (columns) FROM STDIN (FORMAT csv)`` fed from Arrow record batches (psycopg cursor)."""
    with cur.copy(sql.copy_from_stdin_sql(table, columns)) as copy:
        for chunk in iter_csv_chunks(batches):
            copy.write(chunk)
