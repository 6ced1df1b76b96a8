"""Real, private services for the warehouse tests, all on loopback and gone after the session:

* a PostgreSQL 15 server (``initdb`` in a temporary folder, run as an unprivileged user when the suite
  runs as root, MD5 password authentication over TCP for the test role);
* :class:`~tests.sinks.warehouse.pgproxy.PgProxy` in front of it for redshift_connector;
* moto's S3 (and Secrets Manager) server.

Each test gets its own schema (dropped afterwards) and its own bucket.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from sinks.warehouse import sql
from sinks.warehouse.base import COLUMN_NAMES, KEY
from sinks.warehouse.postgres import PostgresSettings, PostgresWarehouse
from sinks.warehouse.protocol import RetryPolicy
from sinks.warehouse.redshift import RedshiftSettings, RedshiftWarehouse, connect_kwargs, insert_rows
from sinks.warehouse.staging import iter_record_batches, split_s3_url
from tests.sinks.warehouse import pgserver
from tests.sinks.warehouse.pgproxy import PgProxy
from tests.sinks.warehouse.pgserver import DATABASE, TEST_ROLE, PgServer, free_port

FAST_RETRY = RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.05, max_outage=timedelta(seconds=5))
TEST_PASSWORD = "test-only-" + secrets.token_hex(8)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PgServer]:
    if not pgserver.available():
        pytest.skip(f"PostgreSQL binaries not found in {pgserver.PG_BIN} (set MEDIAPULSE_PG_BIN)")
    with pgserver.private_postgres(TEST_PASSWORD) as server:
        yield server


def pg_settings(server: PgServer, schema: str) -> PostgresSettings:
    return PostgresSettings(server.host, server.port, DATABASE, TEST_ROLE, schema=schema, retry=FAST_RETRY)


@pytest.fixture(scope="session")
def pg_proxy(postgres_server: PgServer) -> Iterator[PgProxy]:
    proxy = PgProxy(postgres_server.host, postgres_server.port)
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here may reach a real AWS account, whatever the developer's environment holds."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture
def s3_client(aws_endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=aws_endpoint, region_name="us-east-1")


@pytest.fixture
def arrow_s3(aws_endpoint: str) -> Any:
    import pyarrow.fs as pafs

    return pafs.S3FileSystem(
        endpoint_override=aws_endpoint.removeprefix("http://"),
        scheme="http",
        region="us-east-1",
        access_key="testing",
        secret_key="testing",
    )


@pytest.fixture
def bucket(s3_client: Any) -> str:
    name = f"mediapulse-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def schema(postgres_server: PgServer) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with postgres_server.admin() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@dataclass
class ManifestStreamLoader:
    """Test stand-in for Redshift's ``COPY … FORMAT AS PARQUET MANIFEST`` (PostgreSQL has no COPY from S3).

    It reads the manifest the warehouse wrote, checks each entry the way Redshift needs it (mandatory,
    ``meta.content_length`` equal to the object's size), then streams exactly those Parquet files into
    the staging table over the same redshift_connector cursor, with multi-row INSERTs.
    """

    s3: Any
    fs: Any
    manifests: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, cur: Any, stage: str, manifest_url: str) -> None:
        bucket, key = split_s3_url(manifest_url)
        manifest = json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        self.manifests.append(manifest)
        files = []
        for entry in manifest["entries"]:
            entry_bucket, entry_key = split_s3_url(entry["url"])
            size = self.s3.head_object(Bucket=entry_bucket, Key=entry_key)["ContentLength"]
            assert entry["mandatory"] is True
            assert entry["meta"]["content_length"] == size, f"content_length of {entry['url']} is wrong"
            files.append(entry["url"])
        columns = tuple(name for name, _ in sql.stage_columns(stage))
        prefix = f"INSERT INTO {stage} ({', '.join(columns)}) VALUES "
        insert_rows(cur, prefix, columns, iter_record_batches(files, columns, s3=self.fs))


@pytest.fixture
def make_postgres(
    postgres_server: PgServer, schema: str, arrow_s3: Any
) -> Iterator[Callable[..., PostgresWarehouse]]:
    opened: list[PostgresWarehouse] = []

    def make(**overrides: Any) -> PostgresWarehouse:
        settings = pg_settings(postgres_server, schema)
        if "retry" in overrides:
            settings = dataclasses.replace(settings, retry=overrides.pop("retry"))
        wh = PostgresWarehouse(settings, password=TEST_PASSWORD, s3=arrow_s3, **overrides)
        opened.append(wh)
        return wh

    yield make
    for wh in opened:
        wh.close()


def redshift_settings(proxy: PgProxy, schema: str, retry: RetryPolicy = FAST_RETRY) -> RedshiftSettings:
    assert proxy.port is not None
    return RedshiftSettings(
        host="127.0.0.1",
        port=proxy.port,
        database=DATABASE,
        schema=schema,
        user=TEST_ROLE,
        sslmode="disable",
        retry=retry,
    )


@pytest.fixture
def make_redshift(
    pg_proxy: PgProxy,
    schema: str,
    s3_client: Any,
    arrow_s3: Any,
    make_postgres: Callable[..., PostgresWarehouse],
) -> Iterator[Callable[..., RedshiftWarehouse]]:
    """RedshiftWarehouse whose connections go through the proxy (MD5, no TLS) and whose COPY step streams
    the manifest's files. Tables come from the PostgreSQL DDL: Redshift's own DDL is covered by parsing.

    Redshift runs each transaction at its database's isolation level whatever BEGIN says; ``isolation``
    plays that part: each session's default level, ``serializable`` (Redshift's SERIALIZABLE) or
    ``repeatable read`` (PostgreSQL's snapshot isolation, standing in for Redshift's SNAPSHOT)."""
    opened: list[RedshiftWarehouse] = []
    make_postgres().init()
    env = {"MEDIAPULSE_WAREHOUSE_PASSWORD": TEST_PASSWORD}

    def make(
        retry: RetryPolicy = FAST_RETRY, isolation: str = "serializable", **overrides: Any
    ) -> RedshiftWarehouse:
        import redshift_connector

        settings = redshift_settings(pg_proxy, schema, retry)
        assert isolation in ("serializable", "repeatable read")

        def connect() -> Any:
            conn = redshift_connector.connect(**connect_kwargs(settings, environ=env))
            conn.autocommit = True
            cur = conn.cursor()
            cur.execute(f"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL {isolation}")
            cur.close()
            return conn

        options: dict[str, Any] = {
            "connect": connect,
            "copier": ManifestStreamLoader(s3_client, arrow_s3),
            "s3_client": s3_client,
            **overrides,
        }
        wh = RedshiftWarehouse(settings, **options)
        opened.append(wh)
        return wh

    yield make
    for wh in opened:
        wh.close()


def read_target(server: PgServer, schema: str, table: str = "content_engagement") -> list[tuple[Any, ...]]:
    with server.admin() as conn:
        return conn.execute(
            f"SELECT {', '.join(COLUMN_NAMES)} FROM {schema}.{table} ORDER BY {', '.join(KEY)}"
        ).fetchall()


def read_ledger(server: PgServer, schema: str) -> list[tuple[Any, ...]]:
    with server.admin() as conn:
        return conn.execute(
            f"SELECT query_name, batch_id, rows FROM {schema}.mediapulse_batches "
            "ORDER BY query_name, batch_id"
        ).fetchall()


def wait_for_lock_waiter(server: PgServer, timeout: float = 30.0) -> bool:
    """Whether some session of the test role is (or within ``timeout`` s comes to be) waiting on a lock."""
    import time

    deadline = time.monotonic() + timeout
    with server.admin() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND wait_event_type = 'Lock'",
                (server.role,),
            ).fetchone()[0]
            if waiting:
                return True
            time.sleep(0.05)
    return False


METRICS = ("impressions", "clicks", "play_starts", "completions", "watch_time_ms")


def postgres_metrics(server: PgServer, schema: str) -> dict[tuple[Any, ...], dict[str, int]]:
    """The target's :data:`METRICS` by key, ``window_start`` as an aware UTC time (as the oracle keys it)."""
    from datetime import UTC

    with server.admin() as conn:
        rows = conn.execute(f"SELECT {', '.join(COLUMN_NAMES)} FROM {schema}.content_engagement").fetchall()
    found = {}
    for row in rows:
        r = dict(zip(COLUMN_NAMES, row, strict=True))
        start = r["window_start"]
        start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
        key = (start, r["content_id"], r["affiliate_id"], r["placement"], r["platform"])
        found[key] = {m: r[m] for m in METRICS}
    return found
