"""Amazon Redshift warehouse (redshift_connector), loading staged Parquet with COPY from S3.

URL::

    redshift://host:5439/db?schema=analytics&iam_role=arn:aws:iam::123456789012:role/mediapulse-copy
        &workgroup=mediapulse                                  # serverless, IAM
      | &cluster_identifier=mediapulse&db_user=mediapulse      # provisioned, IAM temporary credentials
      | &secret_arn=arn:aws:secretsmanager:…                   # user/password from Secrets Manager
        &region=eu-west-1&sslmode=verify-full

No password lives in a file: IAM (``workgroup`` or ``cluster_identifier`` + ``db_user``) or a Secrets
Manager secret (``secret_arn``, JSON with ``username`` and ``password``). For a developer's own cluster a
``user@`` in the URL with ``MEDIAPULSE_WAREHOUSE_PASSWORD`` in the environment also works. TLS is on with
``sslmode=verify-full`` unless the URL says ``verify-ca`` (or ``disable``, for a local tunnel only).

A load (the protocol of :mod:`sinks.warehouse.protocol`, in one transaction at the database's isolation
level, SERIALIZABLE or SNAPSHOT):

1. ``LOCK`` the ledger table, before anything reads: a second load (of this batch or another) waits for
   the first to end, then sees its ledger row. Primary keys are not enforced on Redshift, and under
   SNAPSHOT isolation two loads of one batch would otherwise both commit;
2. skip if the ledger holds ``(query, batch_id)``;
3. write ``_mediapulse.manifest`` next to the staged Parquet files on S3 (once for all attempts),
   listing each file with ``mandatory: true`` and ``meta.content_length`` (S3 HeadObject), encrypted
   the way those files are (SSE-KMS with their key, on EMR);
4. ``COPY stage FROM 's3://…/_mediapulse.manifest' IAM_ROLE … FORMAT AS PARQUET MANIFEST``;
5. keep the newest row per key if a key occurs twice, MERGE, insert the ledger row, COMMIT;
6. after the commit (or a ledger skip): delete the attempt's staging objects.

When COPY fails, the rows of ``SYS_LOAD_ERROR_DETAIL`` (else ``STL_LOAD_ERRORS``) for this session go
into the error message.

Both the connection factory (``connect``) and the COPY step (``copier``) can be replaced: the test suite
connects through a protocol proxy to PostgreSQL and swaps COPY-from-S3 (which PostgreSQL lacks) for a
loader that streams the same manifest's files. COPY from S3 itself runs only against a live cluster.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, unquote, urlparse

from sinks.warehouse import analytics, sql
from sinks.warehouse.base import (
    DAILY,
    Isolation,
    RejectedRowsError,
    StagedBatch,
    WarehouseError,
    validate_identifier,
)
from sinks.warehouse.catalog import ColumnDef, diff_columns, split_name
from sinks.warehouse.protocol import RetryPolicy, ServerWarehouse, with_max_outage
from sinks.warehouse.staging import is_s3_url, split_s3_url, to_warehouse_types

if TYPE_CHECKING:
    import pyarrow as pa

    from streaming.config import WarehouseConfig

log = logging.getLogger(__name__)

MANIFEST_NAME = "_mediapulse.manifest"
VIEWERS_MANIFEST_NAME = "_mediapulse_viewers.manifest"
DEFAULT_PORT = 5439
SSL_MODES = ("verify-full", "verify-ca", "disable")
PASSWORD_ENV_VAR = "MEDIAPULSE_WAREHOUSE_PASSWORD"
# Bound parameters per multi-row INSERT (dimension rows; the test loader).
_PARAMS_PER_INSERT = 8_000

Connect = Callable[[], Any]


class Copier(Protocol):
    """Fills the staging table from a manifest: ``copier(cursor, stage_table, manifest_url)``."""

    def __call__(self, cur: Any, stage: str, manifest_url: str) -> None: ...


@dataclass(frozen=True)
class S3ParquetCopy:
    """The production COPY step: Redshift reads the manifest's Parquet files from S3 itself."""

    iam_role: str

    def __call__(self, cur: Any, stage: str, manifest_url: str) -> None:
        cur.execute(sql.copy_parquet_manifest_sql(stage, manifest_url, self.iam_role))


class CopyFailed(Exception):
    """COPY rejected the staged files (not a transient failure)."""


@dataclass(frozen=True)
class RedshiftSettings:
    host: str
    database: str
    port: int = DEFAULT_PORT
    schema: str = "public"
    user: str | None = None
    iam_role: str | None = None
    workgroup: str | None = None
    cluster_identifier: str | None = None
    db_user: str | None = None
    secret_arn: str | None = None
    region: str | None = None
    profile: str | None = None
    sslmode: str = "verify-full"
    timeout: int = 30
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @property
    def auth(self) -> str:
        if self.workgroup:
            return "serverless-iam"
        if self.cluster_identifier:
            return "cluster-iam"
        if self.secret_arn:
            return "secret"
        return "password-env"


_URL_PARAMS = {
    "schema",
    "iam_role",
    "workgroup",
    "cluster_identifier",
    "db_user",
    "secret_arn",
    "region",
    "profile",
    "sslmode",
    "timeout",
    "max_attempts",
    "retry_base_ms",
    "retry_max_ms",
}


def parse_redshift_url(url: str) -> RedshiftSettings:
    """Parse and check a ``redshift://`` URL (see the module docstring); passwords are refused."""
    parsed = urlparse(url)
    if parsed.scheme != "redshift":
        raise WarehouseError(f"not a redshift:// URL: {url!r}")
    if parsed.password is not None:
        raise WarehouseError(
            "warehouse.url must not carry a password: use IAM, secret_arn or the environment"
        )
    params = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    unknown = sorted(set(params) - _URL_PARAMS)
    if unknown:
        raise WarehouseError(f"unknown warehouse URL parameter(s): {', '.join(unknown)}")
    database = unquote(parsed.path.lstrip("/"))
    if not parsed.hostname or not database:
        raise WarehouseError(f"warehouse.url {url!r} needs host and database: redshift://host:5439/db")
    if params.get("workgroup") and params.get("cluster_identifier"):
        raise WarehouseError(
            "warehouse.url: give either workgroup (serverless) or cluster_identifier, not both"
        )
    if params.get("cluster_identifier") and not params.get("db_user"):
        raise WarehouseError(
            "warehouse.url: cluster_identifier needs db_user (the database user to log in as)"
        )
    sslmode = params.get("sslmode", "verify-full")
    if sslmode not in SSL_MODES:
        raise WarehouseError(f"warehouse.url: sslmode must be one of {', '.join(SSL_MODES)}, not {sslmode!r}")
    iam_role = params.get("iam_role")
    if iam_role is not None:
        sql.validate_iam_role(iam_role)
    try:
        port = parsed.port or DEFAULT_PORT
        timeout = int(params.get("timeout", 30))
    except ValueError as e:
        raise WarehouseError(f"invalid port or timeout in warehouse.url: {e}") from e
    return RedshiftSettings(
        host=parsed.hostname,
        port=port,
        database=database,
        schema=validate_identifier(params.get("schema", "public"), "schema"),
        user=unquote(parsed.username) if parsed.username else None,
        iam_role=iam_role,
        workgroup=params.get("workgroup"),
        cluster_identifier=params.get("cluster_identifier"),
        db_user=params.get("db_user"),
        secret_arn=params.get("secret_arn"),
        region=params.get("region") or _region_of_arn(params.get("secret_arn")),
        profile=params.get("profile"),
        sslmode=sslmode,
        timeout=timeout,
        retry=RetryPolicy.from_query(params),
    )


def _region_of_arn(arn: str | None) -> str | None:
    parts = (arn or "").split(":")
    if len(parts) > 4 and parts[0] == "arn" and parts[3]:
        return parts[3]
    return None


def read_secret(secret_arn: str, region: str | None = None, client: Any = None) -> dict[str, Any]:
    """The JSON of a Secrets Manager secret (``username``, ``password``, …)."""
    if client is None:
        import boto3

        client = boto3.client("secretsmanager", region_name=region)
    try:
        value = client.get_secret_value(SecretId=secret_arn)
        secret = json.loads(value["SecretString"])
    except Exception as e:  # botocore errors, missing SecretString, bad JSON: all mean "cannot log in"
        raise WarehouseError(f"cannot read warehouse secret {secret_arn}: {e}") from e
    if not isinstance(secret, dict) or not secret.get("username") or not secret.get("password"):
        raise WarehouseError(f"warehouse secret {secret_arn} must be JSON with username and password")
    return secret


def connect_kwargs(
    settings: RedshiftSettings,
    secret: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``redshift_connector.connect`` (no network access here)."""
    s = settings
    kwargs: dict[str, Any] = {
        "host": s.host,
        "port": s.port,
        "database": s.database,
        "timeout": s.timeout,
        "application_name": "mediapulse",
        "tcp_keepalive": True,
    }
    if s.sslmode == "disable":
        kwargs["ssl"] = False
    else:
        kwargs["ssl"] = True
        kwargs["sslmode"] = s.sslmode
    if s.region:
        kwargs["region"] = s.region
    if s.auth == "serverless-iam":
        kwargs.update(iam=True, is_serverless=True, serverless_work_group=s.workgroup)
    elif s.auth == "cluster-iam":
        kwargs.update(iam=True, cluster_identifier=s.cluster_identifier, db_user=s.db_user)
    elif s.auth == "secret":
        if secret is None:
            raise WarehouseError("secret_arn is set but the secret was not read")
        kwargs.update(user=secret["username"], password=secret["password"])
    else:
        env = os.environ if environ is None else environ
        password = env.get(PASSWORD_ENV_VAR)
        if not s.user or not password:
            raise WarehouseError(
                "no way to log in to Redshift: add workgroup=… (serverless IAM), "
                "cluster_identifier=…&db_user=… "
                f"(IAM), secret_arn=… to warehouse.url, or user@ in the URL with {PASSWORD_ENV_VAR} set"
            )
        kwargs.update(user=s.user, password=password)
    if s.profile and s.auth in ("serverless-iam", "cluster-iam"):
        kwargs["profile"] = s.profile
    return kwargs


def s3_url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


# HeadObject answers and PutObject arguments share these names.
_ENCRYPTION_FIELDS = ("ServerSideEncryption", "SSEKMSKeyId", "BucketKeyEnabled")


def encryption_of(head: Mapping[str, Any]) -> dict[str, Any]:
    """PutObject arguments that encrypt an object the way HeadObject (``head``) says another one is."""
    return {name: head[name] for name in _ENCRYPTION_FIELDS if head.get(name) is not None}


def write_manifest(s3: Any, batch: StagedBatch, viewers: bool = False) -> str:
    """Write the COPY manifest next to the batch's files and return its ``s3://`` URL.

    Each entry is mandatory and carries ``meta.content_length`` (from HeadObject): Redshift requires the
    length for Parquet and ORC manifests. The manifest is encrypted like the staged files beside it (on
    EMR: SSE-KMS with the security configuration's key), so a bucket policy that demands SSE-KMS accepts
    it and no object of the prefix is stored with weaker encryption.
    """
    if not is_s3_url(batch.uri):
        raise WarehouseError(
            f"Redshift loads from S3: {batch.query} batch {batch.batch_id} is staged at {batch.uri} "
            "(set warehouse.staging_path to an s3:// prefix)"
        )
    entries = []
    encryption: dict[str, Any] = {}
    for uri in batch.files_for(viewers):
        bucket, key = split_s3_url(uri)
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except Exception as e:  # botocore ClientError and friends
            raise WarehouseError(f"cannot stat staged file {uri}: {e}") from e
        encryption = encryption or encryption_of(head)
        size = int(head["ContentLength"])
        entries.append({"url": s3_url(bucket, key), "mandatory": True, "meta": {"content_length": size}})
    bucket, prefix = split_s3_url(batch.uri)
    key = f"{prefix.rstrip('/')}/{VIEWERS_MANIFEST_NAME if viewers else MANIFEST_NAME}"
    body = json.dumps({"entries": entries}, indent=1).encode()
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", **encryption)
    except Exception as e:
        raise WarehouseError(f"cannot write the COPY manifest {s3_url(bucket, key)}: {e}") from e
    return s3_url(bucket, key)


def delete_staging(s3: Any, uri: str) -> int:
    """Delete every object under the batch's staging prefix; returns how many were deleted."""
    bucket, prefix = split_s3_url(uri)
    prefix = prefix.rstrip("/") + "/"
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            s3.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
            deleted += len(chunk)
    return deleted


def insert_rows(cur: Any, prefix: str, columns: tuple[str, ...], batches: Iterable[pa.RecordBatch]) -> int:
    """Multi-row ``INSERT … VALUES`` with bound parameters, for small tables (no COPY FROM STDIN on Redshift).

    ``prefix`` is ``INSERT INTO t (cols) VALUES `` from :mod:`sinks.warehouse.sql`.
    """
    width = len(columns)
    per_statement = max(1, _PARAMS_PER_INSERT // width)
    total = 0
    pending: list[Any] = []
    pending_rows = 0

    def flush() -> None:
        nonlocal pending, pending_rows
        if pending_rows:
            cur.execute(sql.values_rows_sql(prefix, width, pending_rows), pending)
        pending, pending_rows = [], 0

    for batch in batches:
        batch = to_warehouse_types(batch.select(list(columns)))
        values = [batch.column(i).to_pylist() for i in range(width)]
        for row in zip(*values, strict=True):
            pending.extend(row)
            pending_rows += 1
            total += 1
            if pending_rows == per_statement:
                flush()
    flush()
    return total


def _error_fields(error: BaseException) -> dict[str, str]:
    """redshift_connector raises ``ProgrammingError({'S': …, 'C': sqlstate, 'M': message, 'D': detail})``."""
    if error.args and isinstance(error.args[0], dict):
        return {str(k): str(v) for k, v in error.args[0].items()}
    return {}


class RedshiftWarehouse(ServerWarehouse):
    """Amazon Redshift (provisioned or serverless) through redshift_connector."""

    dialect: sql.Dialect = "redshift"

    def __init__(
        self,
        settings: RedshiftSettings,
        table: str = "content_engagement",
        ledger_table: str = "mediapulse_batches",
        *,
        connect: Connect | None = None,
        copier: Copier | None = None,
        s3_client: Any = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(sql.Tables.of(settings.schema, table, ledger_table), settings.retry)
        self.settings = settings
        self._connect_fn = connect
        self._copier = copier
        self._s3_client = s3_client
        self._environ = environ

    @classmethod
    def from_config(
        cls,
        cfg: WarehouseConfig,
        *,
        connect: Connect | None = None,
        copier: Copier | None = None,
        s3_client: Any = None,
    ) -> RedshiftWarehouse:
        settings = parse_redshift_url(cfg.url)
        return cls(
            replace(settings, retry=with_max_outage(settings.retry, cfg)),
            cfg.table,
            cfg.ledger_table,
            connect=connect,
            copier=copier,
            s3_client=s3_client,
        )

    # --- connection ----------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._connect_fn is not None:
            return self._connect_fn()
        import redshift_connector

        secret = None
        if self.settings.auth == "secret":
            secret = read_secret(self.settings.secret_arn or "", self.settings.region)
        return redshift_connector.connect(**connect_kwargs(self.settings, secret, self._environ))

    def _is_missing_table(self, error: BaseException) -> bool:
        return _error_fields(error).get("C") == "42P01"

    def _serialize(self, cur: Any, batch: StagedBatch) -> None:
        cur.execute(sql.lock_sql(self.ledger_table))

    def isolation_level(self) -> str:
        """The database's isolation level as Redshift names it (``Serializable``, ``Snapshot Isolation``)."""
        rows = self.fetch(sql.REDSHIFT_ISOLATION_SQL, (self.settings.database,), what="isolation level read")
        if not rows:
            raise WarehouseError(f"stv_db_isolation_level has no row for database {self.settings.database}")
        return str(rows[0][0])

    def isolation(self) -> Isolation:
        """The database's level (``stv_db_isolation_level``), with a warning on SNAPSHOT."""
        database = self.settings.database
        try:
            level = self.isolation_level()
        except WarehouseError as e:
            return Isolation(f"isolation level of database {database}: unknown", f"could not read it: {e}")
        warning = None
        if "snapshot" in level.lower():
            warning = (
                f"database {database} runs SNAPSHOT isolation and Redshift does not enforce primary keys: "
                "two writers of one batch could both commit. mediapulse's loads lock "
                f"{self.ledger_table} first and stay exactly once; any other writer of {self.table} must "
                f"take the same lock, or run ALTER DATABASE {database} ISOLATION LEVEL SERIALIZABLE"
            )
        return Isolation(f"isolation level of database {database}: {level}", warning)

    def _retry_reason(self, error: BaseException) -> str | None:
        if isinstance(error, CopyFailed):
            return None
        fields = _error_fields(error)
        code = fields.get("C", "")
        text = f"{fields.get('M', '')} {fields.get('D', '')}".lower()
        if code.startswith("28"):  # authentication: another try will not help
            return None
        if (
            code in ("40001", "40P01")
            or fields.get("M", "").strip() == "1023"
            or "serializable isolation violation" in text
            or "conflict with concurrent transaction" in text
        ):
            return "serialization"
        if code.startswith("08") or code in ("57P01", "57P02", "57P03"):
            return "disconnect"
        import redshift_connector

        if not fields and isinstance(error, redshift_connector.InterfaceError | OSError | EOFError):
            return "disconnect"
        return None

    # --- staging -------------------------------------------------------------------------------

    @property
    def s3(self) -> Any:
        if self._s3_client is None:
            import boto3

            self._s3_client = boto3.client("s3", region_name=self.settings.region)
        return self._s3_client

    def _copy_step(self) -> Copier:
        if self._copier is not None:
            return self._copier
        if not self.settings.iam_role:
            raise WarehouseError("warehouse.url needs iam_role=arn:… (the role Redshift assumes to read S3)")
        return S3ParquetCopy(self.settings.iam_role)

    def _prepare(self, batch: StagedBatch) -> dict[str, str]:
        if batch.files or batch.viewers_files:
            self._copy_step()  # fail before the transaction when COPY cannot run at all
        return {}

    def _stage(self, cur: Any, batch: StagedBatch, prepared: Any, stage: str = sql.STAGE_TABLE) -> None:
        viewers = stage == sql.STAGE_VIEWERS_TABLE
        if not batch.files_for(viewers):  # an empty batch: nothing to COPY, the MERGE is a no-op
            return
        # Written after the ledger check (a replayed batch needs no manifest), once for all attempts.
        if stage not in prepared:
            prepared[stage] = write_manifest(self.s3, batch, viewers)
        try:
            self._copy_step()(cur, stage, prepared[stage])
        except Exception as e:
            if self._retry_reason(e) is not None:
                raise
            raise CopyFailed(_error_fields(e).get("M") or str(e)) from e

    def _rejects_rows(self, error: BaseException) -> bool:
        # SQLSTATE class 22 (data exception) or 23 (integrity constraint violation), e.g. in the MERGE
        return _error_fields(error).get("C", "")[:2] in ("22", "23")

    def _load_failed(self, error: WarehouseError, batch: StagedBatch) -> WarehouseError | None:
        if not isinstance(error.__cause__, CopyFailed):
            return None
        details = self.load_errors()
        listing = "\n".join(f"  {line}" for line in details) or "  (no rows in the load error views)"
        message = f"COPY of {batch.query} batch {batch.batch_id} from {batch.uri} failed: {error.__cause__}"
        if not details:  # no file or row refused (e.g. S3 access denied): may succeed after a restart
            return WarehouseError(f"{message}\nload errors of this session:\n{listing}")
        # COPY refused rows of the staged files: every replay would fail the same way.
        return RejectedRowsError(
            f"{message}\nthe warehouse rejects rows of this batch: every replay would fail the same way, so "
            f"the batch is not retried; fix the data or the table and start the app again\n"
            f"rejected rows (load errors of this session):\n{listing}"
        )

    def load_errors(self) -> list[str]:
        """This session's newest COPY errors: SYS_LOAD_ERROR_DETAIL, else STL_LOAD_ERRORS."""
        try:
            pid = self.fetch(sql.BACKEND_PID_SQL, what="session id")[0][0]
        except WarehouseError as e:
            log.debug("no session id for the load errors: %s", e)
            return []
        for statement in (sql.LOAD_ERROR_DETAIL_SQL, sql.STL_LOAD_ERRORS_SQL):
            try:
                rows = self.fetch(statement, (pid,), what="load error read")
            except WarehouseError as e:
                log.debug("load error view unavailable: %s", e)
                continue
            return [
                f"{file}:{line} column {column} ({ctype}): error {code}: {message}"
                for file, line, column, ctype, code, message in rows
            ]
        return []

    def _delete_staging(self, uri: str) -> None:
        delete_staging(self.s3, uri)

    def _insert_dim_rows(self, cur: Any, table: pa.Table) -> None:
        _, prefix = sql.replace_dim_sql(self.tables.content_dim)
        names = tuple(name for name, _ in sql.CONTENT_DIM_COLUMNS)
        insert_rows(cur, prefix, names, table.to_batches())

    def _table_problems(self, table: str, expected: list[ColumnDef]) -> list[str]:
        schema, name = split_name(table)
        table_def = self.fetch(sql.PG_TABLE_DEF_SQL, (schema, name))
        table_info = self.fetch(sql.SVV_TABLE_INFO_SQL, (schema, name)) if table_def else []
        distkey = {self.tables.table: sql.ENGAGEMENT_DISTKEY, self.tables.daily: sql.DAILY_DISTKEY}.get(table)
        return redshift_table_problems(table, expected, table_def, table_info, distkey)


def redshift_table_problems(
    table: str,
    expected: Sequence[ColumnDef],
    table_def: Sequence[tuple[Any, ...]],
    table_info: Sequence[tuple[Any, ...]],
    distkey: str | None,
) -> list[str]:
    """Compare ``pg_table_def`` rows (column, type, encoding, distkey, sortkey) and the
    ``svv_table_info`` row (diststyle, sortkey1, sortkey_num; absent while the table is empty)."""
    actual = [
        ColumnDef(str(name), str(kind), encoding=str(encoding).lower(), distkey=bool(dist), sortkey=int(sort))
        for name, kind, encoding, dist, sort in table_def
    ]
    problems = diff_columns(table, expected, actual, check_order=True)
    if table_info and actual:
        diststyle, sortkey1, _ = table_info[0]
        want_style = f"KEY({distkey})" if distkey else "AUTO"
        if not str(diststyle).upper().startswith(want_style.upper()):
            problems.append(f"{table}: diststyle is {diststyle}, expected {want_style}")
        leading = next((c.name for c in expected if c.sortkey == 1), None)
        if leading and str(sortkey1 or "").strip() != leading:
            problems.append(f"{table}: first sort key column is {sortkey1}, expected {leading}")
    return problems


def all_statements(tables: sql.Tables, iam_role: str = "default") -> list[str]:
    """Every statement :class:`RedshiftWarehouse` and :mod:`sinks.warehouse.admin` can send, as templates.

    Multi-row INSERTs appear with one row of placeholders. The test suite parses each with sqlglot's
    Redshift dialect and lints each MERGE.
    """
    _, dim_prefix = sql.replace_dim_sql(tables.content_dim)
    return [
        *sql.session_sql(tables.schema, "redshift"),
        sql.begin_sql("redshift"),
        sql.COMMIT_SQL,
        sql.ROLLBACK_SQL,
        *sql.init_sql(tables, "redshift"),
        sql.lock_sql(tables.ledger),
        sql.ledger_lookup_sql(tables.ledger),
        *sql.stage_sql(tables.table, "redshift"),
        sql.copy_parquet_manifest_sql(sql.STAGE_TABLE, "s3://bucket/prefix/_mediapulse.manifest", iam_role),
        sql.stage_count_sql(),
        sql.duplicate_keys_sql(),
        sql.dedup_stage_sql(),
        sql.merge_sql(tables.table, sql.STAGE_TABLE),
        sql.merge_sql(tables.table, sql.STAGE_DEDUP_TABLE),
        *sql.stage_sql(tables.daily, "redshift", (sql.STAGE_VIEWERS_TABLE,)),
        sql.copy_parquet_manifest_sql(
            sql.STAGE_VIEWERS_TABLE, f"s3://bucket/prefix/{VIEWERS_MANIFEST_NAME}", iam_role
        ),
        sql.merge_sql(tables.daily, sql.STAGE_VIEWERS_TABLE, DAILY.key, DAILY.names()),
        sql.ledger_insert_sql(tables.ledger),
        sql.committed_sql(tables.ledger),
        *(analytics.render(s, "redshift") for s in analytics.report_statements(tables.names())),
        sql.replace_dim_sql(tables.content_dim)[0],
        sql.values_rows_sql(dim_prefix, len(sql.CONTENT_DIM_COLUMNS), 1),
        sql.BACKEND_PID_SQL,
        sql.LOAD_ERROR_DETAIL_SQL,
        sql.STL_LOAD_ERRORS_SQL,
        sql.PG_TABLE_DEF_SQL,
        sql.SVV_TABLE_INFO_SQL,
        sql.INFORMATION_SCHEMA_COLUMNS_SQL,
        sql.VIEWS_SQL,
        sql.REDSHIFT_ISOLATION_SQL,
    ]
