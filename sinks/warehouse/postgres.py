"""PostgreSQL warehouse (psycopg 3): the load protocol of :mod:`sinks.warehouse.protocol`, with the
staging table filled by ``COPY … FROM STDIN`` streamed from the Parquet files, loads kept apart by an
advisory lock, and ``SERIALIZABLE`` transactions.

URL: ``postgresql://user@host:port/db?schema=analytics``. The password comes only from the environment
(``MEDIAPULSE_WAREHOUSE_PASSWORD``, else ``PGPASSWORD``), never from the URL or a file (``~/.pgpass`` is
not read either). TLS: ``sslmode`` defaults to ``verify-full`` for any host but a loopback one
(``sslrootcert=`` names the CA bundle, or ``system``).
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlparse

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
from psycopg import errors as pg_errors

from sinks.warehouse import sql
from sinks.warehouse.base import (
    KEY,
    Isolation,
    StagedBatch,
    WarehouseError,
    validate_identifier,
)
from sinks.warehouse.catalog import ColumnDef, diff_columns, split_name
from sinks.warehouse.protocol import Contended, RetryPolicy, ServerWarehouse, with_max_outage
from sinks.warehouse.staging import (
    is_s3_url,
    iter_record_batches,
    s3_filesystem,
    split_s3_url,
    to_warehouse_types,
)

if TYPE_CHECKING:
    from streaming.config import WarehouseConfig

PASSWORD_ENV_VARS: tuple[str, ...] = ("MEDIAPULSE_WAREHOUSE_PASSWORD", "PGPASSWORD")
PG_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


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
    retry: RetryPolicy = field(default_factory=RetryPolicy)


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


class PostgresWarehouse(ServerWarehouse):
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

    def _rejects_rows(self, error: BaseException) -> bool:
        # SQLSTATE class 22 (data exception: a value too long, out of range, malformed) or 23 (integrity
        # constraint violation): the rows are refused, on every try.
        state = getattr(error, "sqlstate", None) or ""
        return isinstance(error, psycopg.Error) and state[:2] in ("22", "23")

    def _rejected_rows(self, error: BaseException, batch: StagedBatch) -> list[str]:
        """The staged row a COPY refused (its key, found by the line PostgreSQL names) and the server's
        words about it: the COPY context (line, column, value) or the failing row of a constraint."""
        diag = getattr(error, "diag", None)
        if diag is None:
            return []
        context = (diag.context or "").strip().splitlines()
        lines = []
        line = re.match(rf"COPY {sql.STAGE_TABLE}, line (\d+)", context[0]) if context else None
        if line is not None:
            lines.append(f"row {line[1]} of the staged files: {self._staged_key(batch, int(line[1]))}")
        lines += [text for text in (context[0] if context else None, diag.message_detail) if text]
        return lines

    def _staged_key(self, batch: StagedBatch, number: int) -> str:
        """The key of the ``number``-th row (from 1) of the batch's staged files, as COPY reads them."""
        seen = 0
        for part in iter_record_batches(batch.files, KEY, s3=self._s3_fs(batch)):
            if seen + part.num_rows >= number:
                row = part.slice(number - seen - 1, 1).to_pylist()[0]
                return ", ".join(f"{name}={row[name]}" for name in KEY)
            seen += part.num_rows
        return "(not found in the staged files)"

    def _serialize(self, cur: Any, batch: StagedBatch) -> None:
        # Taken before any read; if another session holds it, wait for it to finish, then start over in
        # a new transaction whose snapshot sees that session's ledger row.
        key = advisory_key(batch.query, batch.batch_id)
        cur.execute(sql.TRY_ADVISORY_LOCK_SQL, (key,))
        if not cur.fetchone()[0]:
            cur.execute(sql.ADVISORY_LOCK_SQL, (key,))
            raise Contended

    def _stage(self, cur: Any, batch: StagedBatch, prepared: Any, stage: str = sql.STAGE_TABLE) -> None:
        files = batch.files_for(stage == sql.STAGE_VIEWERS_TABLE)
        columns = tuple(name for name, _ in sql.stage_columns(stage))
        copy_into(cur, stage, columns, iter_record_batches(files, columns, s3=self._s3_fs(batch)))

    def _s3_fs(self, batch: StagedBatch) -> pafs.FileSystem | None:
        if self._s3 is None and any(is_s3_url(f) for f in (*batch.files, *batch.viewers_files)):
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

    def _table_problems(self, table: str, expected: list[ColumnDef]) -> list[str]:
        rows = self.fetch(sql.INFORMATION_SCHEMA_COLUMNS_SQL, split_name(table))
        return diff_columns(table, expected, [ColumnDef(name, kind) for name, kind in rows])

    def isolation(self) -> Isolation:
        """Loads ask for SERIALIZABLE themselves; the database's default is shown beside it."""
        default = self.fetch(sql.POSTGRES_ISOLATION_SQL, what="isolation level read")[0][0]
        return Isolation(f"isolation level: loads run serializable (database default: {default})")


def copy_into(cur: Any, table: str, columns: tuple[str, ...], batches: Iterable[pa.RecordBatch]) -> None:
    """``COPY table (columns) FROM STDIN (FORMAT csv)`` fed from Arrow record batches (psycopg cursor)."""
    with cur.copy(sql.copy_from_stdin_sql(table, columns)) as copy:
        for chunk in iter_csv_chunks(batches):
            copy.write(chunk)
