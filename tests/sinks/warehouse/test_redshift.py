"""Redshift specifics: URL and authentication, the COPY manifest and staging clean-up on S3, COPY error
details, error classification, the definitions check, and the proxy the driver goes through.

COPY from S3 itself needs a live cluster (``test_redshift_live.py``); here the COPY step is replaced by a
loader that streams the manifest's files into the staging table over the same connection.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import redshift_connector

from sinks.warehouse import open_warehouse, sql
from sinks.warehouse.analytics import Slice
from sinks.warehouse.base import Isolation, RejectedRowsError, StagedBatch, WarehouseError
from sinks.warehouse.catalog import expected_tables
from sinks.warehouse.redshift import (
    MANIFEST_NAME,
    RedshiftWarehouse,
    connect_kwargs,
    parse_redshift_url,
    read_secret,
    redshift_table_problems,
    write_manifest,
)
from streaming.config import WarehouseConfig
from tests.sinks.warehouse.conftest import (
    DATABASE,
    TEST_PASSWORD,
    TEST_ROLE,
    ManifestStreamLoader,
    PgServer,
    read_ledger,
    read_target,
    wait_for_lock_waiter,
)
from tests.sinks.warehouse.data import apply_batches, as_tuples, make_rows, write_s3_batch
from tests.sinks.warehouse.pgproxy import PgProxy, plain_version

ROLE = "arn:aws:iam::123456789012:role/mediapulse-copy"
HOST = "wg.123456789012.eu-west-1.redshift-serverless.amazonaws.com"


# ------------------------------------------------------------------------------ URL and authentication


def test_serverless_workgroup_logs_in_with_iam_over_verified_tls() -> None:
    s = parse_redshift_url(
        f"redshift://{HOST}/dev?schema=mp&iam_role={ROLE}&workgroup=mediapulse&region=eu-west-1"
    )

    kwargs = connect_kwargs(s)

    assert kwargs["iam"] is True and kwargs["is_serverless"] is True
    assert kwargs["serverless_work_group"] == "mediapulse"
    assert (kwargs["host"], kwargs["port"], kwargs["database"], kwargs["region"]) == (
        HOST,
        5439,
        "dev",
        "eu-west-1",
    )
    assert kwargs["ssl"] is True and kwargs["sslmode"] == "verify-full"
    assert "password" not in kwargs and s.iam_role == ROLE and s.schema == "mp"


def test_provisioned_cluster_logs_in_with_temporary_iam_credentials() -> None:
    s = parse_redshift_url(
        "redshift://c.abc.eu-west-1.redshift.amazonaws.com:5439/dev?cluster_identifier=mp&db_user=loader"
    )

    kwargs = connect_kwargs(s)

    assert (kwargs["iam"], kwargs["cluster_identifier"], kwargs["db_user"]) == (True, "mp", "loader")
    assert "password" not in kwargs and "is_serverless" not in kwargs


def test_secret_supplies_user_and_password(aws_endpoint: str) -> None:
    import boto3

    client = boto3.client("secretsmanager", endpoint_url=aws_endpoint, region_name="us-east-1")
    arn = client.create_secret(
        Name="mediapulse/redshift", SecretString=json.dumps({"username": "loader", "password": "p4ss"})
    )["ARN"]
    s = parse_redshift_url(f"redshift://h/dev?secret_arn={arn}")

    assert s.region == "us-east-1"  # from the ARN
    kwargs = connect_kwargs(s, read_secret(arn, client=client))

    assert (kwargs["user"], kwargs["password"]) == ("loader", "p4ss")
    bad = client.create_secret(Name="mediapulse/bad", SecretString='{"username": "x"}')["ARN"]
    with pytest.raises(WarehouseError, match="username and password"):
        read_secret(bad, client=client)


def test_a_password_comes_only_from_the_environment() -> None:
    s = parse_redshift_url("redshift://dev_user@localhost:5439/dev?sslmode=verify-ca")

    assert connect_kwargs(s, environ={"MEDIAPULSE_WAREHOUSE_PASSWORD": "pw"})["password"] == "pw"
    assert connect_kwargs(s, environ={"MEDIAPULSE_WAREHOUSE_PASSWORD": "pw"})["sslmode"] == "verify-ca"
    with pytest.raises(WarehouseError, match="no way to log in"):
        connect_kwargs(s, environ={})


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redshift://u:pw@h/dev", "must not carry a password"),
        ("redshift://h/dev?workgroup=a&cluster_identifier=b&db_user=c", "either workgroup"),
        ("redshift://h/dev?cluster_identifier=b", "needs db_user"),
        ("redshift://h/dev?sslmode=prefer", "sslmode must be one of"),
        ("redshift://h/dev?iam_role=arn:aws:iam::1:role/x", "invalid iam_role"),
        ("redshift://h/dev?colour=blue", "unknown warehouse URL parameter"),
        ("redshift://h/dev?schema=a.b", "invalid schema|has no dot"),
        ("redshift://h/", "needs host and database"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(WarehouseError, match=message):
        RedshiftWarehouse.from_config(WarehouseConfig(url=url))


def test_from_config_connects_with_the_driver_through_the_proxy(
    pg_proxy: PgProxy, schema: str, make_redshift: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_redshift()  # creates the tables
    monkeypatch.setenv("MEDIAPULSE_WAREHOUSE_PASSWORD", TEST_PASSWORD)
    url = f"redshift://{TEST_ROLE}@127.0.0.1:{pg_proxy.port}/{DATABASE}?schema={schema}&sslmode=disable"

    with open_warehouse(WarehouseConfig(url=url)) as wh:
        assert isinstance(wh, RedshiftWarehouse)
        assert wh.committed("engagement") == []
        assert wh.top(Slice(), "ctr").rows == []


def test_secrets_manager_login_end_to_end(
    pg_proxy: PgProxy, schema: str, make_redshift: Any, aws_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    make_redshift()
    client = boto3.client("secretsmanager", endpoint_url=aws_endpoint, region_name="us-east-1")
    arn = client.create_secret(
        Name=f"mediapulse/{schema}",
        SecretString=json.dumps({"username": TEST_ROLE, "password": TEST_PASSWORD}),
    )["ARN"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_endpoint)
    monkeypatch.delenv("MEDIAPULSE_WAREHOUSE_PASSWORD", raising=False)
    url = f"redshift://127.0.0.1:{pg_proxy.port}/{DATABASE}?schema={schema}&sslmode=disable&secret_arn={arn}"

    with open_warehouse(WarehouseConfig(url=url)) as wh:
        assert wh.committed("engagement") == []


# --------------------------------------------------------------------------------- manifest and S3


def test_manifest_lists_each_file_with_its_length_and_staging_is_deleted_after_commit(
    make_redshift: Any, s3_client: Any, bucket: str, arrow_s3: Any, postgres_server: PgServer, schema: str
) -> None:
    rows = make_rows(1, windows=3)
    batch = write_s3_batch(s3_client, bucket, "staging", "engagement", 1, [rows[:5], rows[5:20], rows[20:]])
    loader = ManifestStreamLoader(s3_client, arrow_s3)
    wh = make_redshift(copier=loader)

    assert wh.load_batch(batch) is True

    [manifest] = loader.manifests  # the loader checked each content_length against the object's size
    assert [e["url"] for e in manifest["entries"]] == list(batch.files)
    assert all(e["mandatory"] is True and e["meta"]["content_length"] > 0 for e in manifest["entries"])
    assert _listing(s3_client, bucket, "staging/engagement/batch_id=1/") == []
    assert read_target(postgres_server, schema) == as_tuples(apply_batches([rows]))


def test_manifest_is_encrypted_like_the_staged_files_beside_it(
    make_redshift: Any, s3_client: Any, bucket: str, arrow_s3: Any, aws_endpoint: str
) -> None:
    import boto3

    key = boto3.client("kms", endpoint_url=aws_endpoint).create_key()["KeyMetadata"]["Arn"]
    rows = make_rows(1)
    batch = write_s3_batch(s3_client, bucket, "staging", "engagement", 1, [rows[:4], rows[4:]])
    for uri in batch.files:  # as EMR's security configuration writes them: SSE-KMS with its key
        _, path = uri.removeprefix("s3://").split("/", 1)
        body = s3_client.get_object(Bucket=bucket, Key=path)["Body"].read()
        s3_client.put_object(
            Bucket=bucket, Key=path, Body=body, ServerSideEncryption="aws:kms", SSEKMSKeyId=key
        )
    heads: list[dict[str, Any]] = []
    loader = ManifestStreamLoader(s3_client, arrow_s3)

    def copy(cur: Any, stage: str, manifest_url: str) -> None:
        heads.append(s3_client.head_object(Bucket=bucket, Key=manifest_url.split("/", 3)[3]))
        loader(cur, stage, manifest_url)

    assert make_redshift(copier=copy).load_batch(batch) is True

    [head] = heads
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key)
    assert _listing(s3_client, bucket, "staging/engagement/batch_id=1/") == []


def _listing(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    return s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])


def test_write_manifest_takes_sizes_from_s3_and_normalises_s3a_urls(s3_client: Any, bucket: str) -> None:
    batch = write_s3_batch(s3_client, bucket, "staging", "q", 7, [make_rows(7), make_rows(7, seed=3)[:2]])
    s3a = StagedBatch(
        batch.query,
        batch.batch_id,
        batch.uri.replace("s3://", "s3a://"),
        tuple(f.replace("s3://", "s3a://") for f in batch.files),
    )

    url = write_manifest(s3_client, s3a)

    assert url == f"{batch.uri}/{MANIFEST_NAME}"
    body = json.loads(s3_client.get_object(Bucket=bucket, Key=url.split("/", 3)[3])["Body"].read())
    expected = [
        {
            "url": f,
            "mandatory": True,
            "meta": {
                "content_length": s3_client.head_object(Bucket=bucket, Key=f.split("/", 3)[3])[
                    "ContentLength"
                ]
            },
        }
        for f in batch.files
    ]
    assert body == {"entries": expected}


def test_a_batch_staged_outside_s3_is_a_clear_error(make_redshift: Any, tmp_path: Any) -> None:
    from tests.sinks.warehouse.data import write_local_batch

    batch = write_local_batch(tmp_path, "engagement", 1, [make_rows(1)])

    with pytest.raises(WarehouseError, match="Redshift loads from S3"):
        make_redshift().load_batch(batch)


def test_copy_needs_an_iam_role(make_redshift: Any, s3_client: Any, bucket: str) -> None:
    batch = write_s3_batch(s3_client, bucket, "staging", "engagement", 1, [make_rows(1)])

    with pytest.raises(WarehouseError, match="needs iam_role"):
        make_redshift(copier=None).load_batch(batch)


# ------------------------------------------------------------------------------------ COPY errors


def _failing_copy(server: PgServer, insert: str) -> Any:
    """A COPY step that records a load error for its session, then fails the way COPY does."""

    def copy(cur: Any, stage: str, manifest_url: str) -> None:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
        with server.admin() as admin:
            admin.execute(insert, (manifest_url.rsplit("/", 1)[0] + "/part-00000.snappy.parquet", pid))
        cur.execute("SELECT CAST('Spectrum Scan Error' AS integer)")

    return copy


@pytest.mark.parametrize(
    ("view", "columns", "values", "detail"),
    [
        pytest.param(
            "sys_load_error_detail",
            "file_name text, line_number bigint, column_name text, column_type text, error_code int, "
            "error_message text, session_id int, start_time timestamp",
            "1, 'ctr', 'float8', 15001, 'File has an incompatible Parquet schema for column ctr'",
            "part-00000.snappy.parquet:1 column ctr (float8): error 15001: "
            "File has an incompatible Parquet schema for column ctr",
            id="sys_load_error_detail",
        ),
        pytest.param(  # the fallback where SYS_LOAD_ERROR_DETAIL is not there
            "stl_load_errors",
            "filename text, line_number bigint, colname text, type text, err_code int, err_reason text, "
            "session int, starttime timestamp",
            "0, 'title', 'varchar', 1204, 'String length exceeds DDL length'",
            "part-00000.snappy.parquet:0 column title (varchar): error 1204: "
            "String length exceeds DDL length",
            id="stl_load_errors",
        ),
    ],
)
def test_copy_error_message_carries_the_load_error_view_detail(
    make_redshift: Any,
    s3_client: Any,
    bucket: str,
    postgres_server: PgServer,
    schema: str,
    view: str,
    columns: str,
    values: str,
    detail: str,
) -> None:
    with postgres_server.admin() as admin:
        admin.execute(f"CREATE TABLE {schema}.{view} ({columns})")
        admin.execute(f"GRANT SELECT ON {schema}.{view} TO {TEST_ROLE}")
    insert = f"INSERT INTO {schema}.{view} VALUES (%s, {values}, %s, now())"
    batch = write_s3_batch(s3_client, bucket, "staging", "engagement", 1, [make_rows(1)])
    wh = make_redshift(copier=_failing_copy(postgres_server, insert))

    with pytest.raises(RejectedRowsError) as failure:  # rows refused: not retried, the app stops
        wh.load_batch(batch)

    message = str(failure.value)
    assert "COPY of engagement batch 1" in message
    assert detail in message
    assert read_ledger(postgres_server, schema) == []
    assert _listing(s3_client, bucket, "staging/engagement/batch_id=1/") != []  # kept to look into


# ------------------------------------------------------------------------------ error classification


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"C": "XX000", "M": "1023", "D": "Serializable isolation violation on table - 1"}, "serialization"),
        ({"C": "40001", "M": "could not serialize access"}, "serialization"),
        (
            {"C": "XX000", "M": "could not complete because of conflict with concurrent transaction"},
            "serialization",
        ),
        ({"C": "57P01", "M": "terminating connection due to administrator command"}, "disconnect"),
        ({"C": "28P01", "M": "password authentication failed"}, None),
        ({"C": "22P02", "M": "invalid input syntax for type integer"}, None),
    ],
)
def test_redshift_errors_are_classified_for_retry(fields: dict[str, str], reason: str | None) -> None:
    wh = RedshiftWarehouse(parse_redshift_url("redshift://h/dev"))

    assert wh._retry_reason(redshift_connector.ProgrammingError({"S": "ERROR", **fields})) == reason
    assert wh._retry_reason(redshift_connector.InterfaceError("network error on read")) == "disconnect"
    assert wh._retry_reason(ConnectionResetError()) == "disconnect"


# ------------------------------------------------------------------------------ two writers, SNAPSHOT


def _drop_primary_keys(server: PgServer, schema: str) -> None:
    """Redshift declares primary keys but does not enforce them."""
    with server.admin() as conn:
        for table in ("content_engagement", "mediapulse_batches"):
            conn.execute(f"ALTER TABLE {schema}.{table} DROP CONSTRAINT {table}_pkey")


def _two_loads_of_one_batch(
    first: RedshiftWarehouse, second: RedshiftWarehouse, batch: StagedBatch, server: PgServer, lock: bool
) -> list[bool]:
    """``first`` reads the ledger and stages, then pauses; ``second`` loads the same batch meanwhile;
    then ``first`` goes on. With ``lock`` the second must be seen waiting on the ledger lock."""
    holding, release = threading.Event(), threading.Event()
    stage = first._stage

    def stage_then_hold(cur: Any, staged: StagedBatch, prepared: Any) -> None:
        stage(cur, staged, prepared)
        holding.set()
        assert release.wait(30)

    first._stage = stage_then_hold  # type: ignore[method-assign]
    results: list[bool] = []
    errors: list[BaseException] = []

    def load(wh: RedshiftWarehouse) -> None:
        try:
            results.append(wh.load_batch(batch))
        except BaseException as e:
            errors.append(e)

    one = threading.Thread(target=load, args=(first,))
    one.start()
    assert holding.wait(30)
    two = threading.Thread(target=load, args=(second,))
    two.start()
    if lock:
        assert wait_for_lock_waiter(server), "the second load should wait on the ledger lock"
    else:
        two.join(timeout=60)  # nothing keeps it apart: it runs to its end
    release.set()
    for t in (one, two):
        t.join(timeout=60)
    assert errors == []
    return results


def test_under_snapshot_isolation_exactly_one_of_two_loads_of_a_batch_applies(
    make_redshift: Any, s3_client: Any, bucket: str, postgres_server: PgServer, schema: str
) -> None:
    """Redshift's SNAPSHOT isolation, emulated: REPEATABLE READ sessions, no enforced keys."""
    _drop_primary_keys(postgres_server, schema)
    rows = make_rows(1, contents=("c1", "c2", "c3", "c4"))
    batch = write_s3_batch(s3_client, bucket, "staging", "engagement", 1, [rows])
    first, second = (make_redshift(isolation="repeatable read") for _ in range(2))

    results = _two_loads_of_one_batch(first, second, batch, postgres_server, lock=True)

    assert sorted(results) == [False, True]
    assert read_ledger(postgres_server, schema) == [("engagement", 1, len(rows))]
    assert read_target(postgres_server, schema) == as_tuples(apply_batches([rows]))


def test_the_snapshot_emulation_shows_the_double_load_the_lock_prevents(
    make_redshift: Any, s3_client: Any, bucket: str, postgres_server: PgServer, schema: str
) -> None:
    """The control: the same two loads without the ledger lock both commit (2 ledger rows, rows twice)."""
    _drop_primary_keys(postgres_server, schema)
    rows = make_rows(1, contents=("c1", "c2", "c3", "c4"))
    batch = write_s3_batch(s3_client, bucket, "staging", "engagement", 1, [rows])
    first, second = (make_redshift(isolation="repeatable read") for _ in range(2))
    for wh in (first, second):
        wh._serialize = lambda cur, batch: None  # type: ignore[method-assign]

    results = _two_loads_of_one_batch(first, second, batch, postgres_server, lock=False)

    assert results == [True, True]
    assert read_ledger(postgres_server, schema) == [("engagement", 1, len(rows))] * 2
    assert len(read_target(postgres_server, schema)) == 2 * len(rows)


def test_check_reports_the_isolation_level_and_warns_on_snapshot(
    make_redshift: Any, postgres_server: PgServer, schema: str
) -> None:
    """``stv_db_isolation_level`` is a Redshift system table: a look-alike in the test schema stands in."""
    with postgres_server.admin() as conn:
        conn.execute(
            f"CREATE TABLE {schema}.stv_db_isolation_level (db_name char(128), isolation_level char(20))"
        )
        conn.execute(
            f"INSERT INTO {schema}.stv_db_isolation_level VALUES ('dev', 'Serializable'), (%s, %s)",
            (DATABASE, "Snapshot Isolation"),
        )
        conn.execute(f"GRANT SELECT ON {schema}.stv_db_isolation_level TO {TEST_ROLE}")
    wh = make_redshift()

    level = wh.isolation()

    assert level.line == f"isolation level of database {DATABASE}: Snapshot Isolation"
    assert level.warning is not None and "SNAPSHOT" in level.warning and "lock" in level.warning
    with postgres_server.admin() as conn:
        conn.execute(f"UPDATE {schema}.stv_db_isolation_level SET isolation_level = 'Serializable'")
    assert wh.isolation() == Isolation(f"isolation level of database {DATABASE}: Serializable")


# ---------------------------------------------------------------------------------- definitions check


def _table_def_rows(table: str) -> list[tuple[Any, ...]]:
    return [
        (c.name, c.type, c.encoding, c.distkey, c.sortkey)
        for c in expected_tables(
            sql.Tables.of("analytics", "content_engagement", "mediapulse_batches"), "redshift"
        )[table]
    ]


def test_redshift_check_accepts_the_expected_definitions() -> None:
    tables = sql.Tables.of("analytics", "content_engagement", "mediapulse_batches")
    expected = expected_tables(tables, "redshift")
    info = [("KEY(content_id)", "window_start", 4)]

    assert (
        redshift_table_problems(
            tables.table, expected[tables.table], _table_def_rows(tables.table), info, "content_id"
        )
        == []
    )
    assert (
        redshift_table_problems(
            tables.ledger,
            expected[tables.ledger],
            _table_def_rows(tables.ledger),
            [("AUTO(ALL)", "query_name", 2)],
            None,
        )
        == []
    )
    assert (
        redshift_table_problems(
            tables.table, expected[tables.table], _table_def_rows(tables.table), [], "content_id"
        )
        == []
    )  # empty tables have no svv_table_info row


def test_redshift_check_reports_each_kind_of_drift() -> None:
    tables = sql.Tables.of("analytics", "content_engagement", "mediapulse_batches")
    expected = expected_tables(tables, "redshift")[tables.table]
    rows = _table_def_rows(tables.table)
    by_name = {r[0]: r for r in rows}
    drifted = [r for r in rows if r[0] != "clicks"]
    drifted = [("ctr", "double precision", "raw", False, 0) if r[0] == "ctr" else r for r in drifted]
    drifted = [
        ("platform", by_name["platform"][1], "zstd", False, 0) if r[0] == "platform" else r for r in drifted
    ]

    problems = redshift_table_problems(
        tables.table, expected, drifted, [("EVEN", "window_start", 3)], "content_id"
    )

    assert f"{tables.table}: missing column clicks (bigint)" in problems
    assert f"{tables.table}: column ctr is encoded raw, expected zstd" in problems
    assert f"{tables.table}: column platform has sort key position 0, expected 5" in problems
    assert f"{tables.table}: diststyle is EVEN, expected KEY(content_id)" in problems
    reordered = [rows[1], rows[0], *rows[2:]]
    assert redshift_table_problems(tables.table, expected, reordered, [], "content_id") == [
        f"{tables.table}: columns are in another order than expected (COPY maps Parquet columns by position)"
    ]
    assert redshift_table_problems(tables.table, expected, [], [], "content_id") == [
        f"{tables.table}: table is missing"
    ]


# ------------------------------------------------------------------------------------------- proxy


def test_proxy_lets_the_real_driver_path_run(pg_proxy: PgProxy, make_redshift: Any) -> None:
    wh = make_redshift()
    wh.committed("engagement")

    assert {"client_protocol_version", "driver_version", "os_version"} <= pg_proxy.dropped_params
    assert {"user", "database"} <= pg_proxy.forwarded_params
    assert 5 in pg_proxy.auth_codes  # AuthenticationMD5Password, answered by the driver
    assert all(plain == plain_version(raw) and b"(" not in plain for raw, plain in pg_proxy.server_versions)
    assert plain_version(b"15.8 (Debian 15.8-0+deb12u1)") == b"15.8"
