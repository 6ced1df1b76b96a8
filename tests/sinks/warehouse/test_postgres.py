"""PostgreSQL specifics: URL and password handling, staging from S3, definitions check, analyst views,
content dimension sync."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.csv as pacsv
import pytest

from sinks.warehouse import open_warehouse, sql
from sinks.warehouse.admin import init_warehouse, sync_dimensions
from sinks.warehouse.analytics import Slice
from sinks.warehouse.base import WarehouseError, WarehouseMissingError
from sinks.warehouse.postgres import PostgresWarehouse, parse_postgres_url, password_from_env
from streaming.config import WarehouseConfig
from tests.sinks.warehouse.conftest import DATABASE, TEST_ROLE, PgServer, read_target
from tests.sinks.warehouse.data import (
    WINDOW,
    Row,
    apply_batches,
    as_tuples,
    dim_rows,
    dim_table,
    make_rows,
    write_local_batch,
    write_s3_batch,
)


def test_url_gives_host_database_user_schema_and_retry_bounds() -> None:
    s = parse_postgres_url(
        "postgresql://loader@db.internal:6432/analytics?schema=mp&max_attempts=7&retry_base_ms=50"
    )

    assert (s.host, s.port, s.database, s.user, s.schema) == (
        "db.internal",
        6432,
        "analytics",
        "loader",
        "mp",
    )
    assert (s.retry.max_attempts, s.retry.base_delay) == (7, 0.05)
    assert parse_postgres_url("postgresql://u@h/db").port == 5432


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u:secret@h/db", "must not carry a password"),
        ("postgresql://h/db", "needs user, host and database"),
        ("postgresql://u@h/db?schema=a&colour=blue", "unknown warehouse URL parameter"),
        ("postgresql://u@h/db?max_attempts=0", "max_attempts must be at least 1"),
        ("postgresql://u@h/db?schema=a-b", "invalid schema"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(WarehouseError, match=message):
        parse_postgres_url(url)


def test_password_comes_from_the_environment_only(
    postgres_server: PgServer, schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert password_from_env({"PGPASSWORD": "b", "MEDIAPULSE_WAREHOUSE_PASSWORD": "a"}) == "a"
    assert password_from_env({"PGPASSWORD": "b"}) == "b"
    assert password_from_env({}) is None
    # A password file holding the right password is not read.
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:{TEST_ROLE}:{_password()}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.delenv("MEDIAPULSE_WAREHOUSE_PASSWORD", raising=False)
    url = (
        f"postgresql://{TEST_ROLE}@127.0.0.1:{postgres_server.port}/{DATABASE}?schema={schema}&max_attempts=2"
    )
    with (
        pytest.raises(WarehouseError, match=r"failed: .*(password|authentication)"),
        open_warehouse(WarehouseConfig(url=url)) as wh,
    ):
        wh.init()

    monkeypatch.setenv("MEDIAPULSE_WAREHOUSE_PASSWORD", _password())
    with open_warehouse(WarehouseConfig(url=url)) as wh:
        assert isinstance(wh, PostgresWarehouse)
        wh.init()
        assert wh.committed("engagement") == []


def test_top_without_tables_is_a_missing_warehouse_and_creates_nothing(
    postgres_server: PgServer, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIAPULSE_WAREHOUSE_PASSWORD", _password())
    url = f"postgresql://{TEST_ROLE}@127.0.0.1:{postgres_server.port}/{DATABASE}?schema={schema}"

    with (
        pytest.raises(WarehouseMissingError, match="has no analyst views"),
        open_warehouse(WarehouseConfig(url=url), read_only=True) as wh,
    ):
        wh.top(Slice())

    with postgres_server.admin() as conn:
        found = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    assert found == (0,)


def _password() -> str:
    from tests.sinks.warehouse.conftest import TEST_PASSWORD

    return TEST_PASSWORD


def test_staged_files_on_s3_are_streamed_with_copy_not_executemany(
    make_postgres: Any,
    s3_client: Any,
    bucket: str,
    postgres_server: PgServer,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = make_rows(1, windows=3)
    batch = write_s3_batch(s3_client, bucket, "staging", "engagement", 1, [rows[:10], rows[10:]])
    wh = make_postgres()
    wh.init()

    def no_executemany(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the bulk path must not use executemany")

    monkeypatch.setattr(psycopg.Cursor, "executemany", no_executemany)
    assert wh.load_batch(batch) is True

    assert read_target(postgres_server, schema) == as_tuples(apply_batches([rows]))
    assert batch.files[0].startswith("s3://")


def test_staged_files_on_s3_are_deleted_after_commit_and_after_a_ledger_skip(
    make_postgres: Any, s3_client: Any, bucket: str, postgres_server: PgServer, schema: str
) -> None:
    rows = make_rows(1)
    wh = make_postgres()
    wh.init()
    other = write_s3_batch(s3_client, bucket, "staging", "engagement", 2, [rows])  # another attempt's

    assert wh.load_batch(write_s3_batch(s3_client, bucket, "staging", "engagement", 1, [rows])) is True
    assert _keys(s3_client, bucket, "staging/engagement/batch_id=1/") == []
    assert wh.load_batch(write_s3_batch(s3_client, bucket, "staging", "engagement", 1, [rows])) is False
    assert _keys(s3_client, bucket, "staging/engagement/batch_id=1/") == []

    assert _keys(s3_client, bucket, "staging/engagement/batch_id=2/") == sorted(
        [f.split("/", 3)[3] for f in other.files] + ["staging/engagement/batch_id=2/_SUCCESS"]
    )
    assert read_target(postgres_server, schema) == as_tuples(apply_batches([rows]))


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))


@pytest.mark.parametrize(
    ("host", "sslmode"),
    [
        ("db.internal", "verify-full"),
        ("10.0.3.7", "verify-full"),
        ("mydb.abc123.eu-west-1.rds.amazonaws.com", "verify-full"),
        ("localhost", None),
        ("127.0.0.1", None),
        ("127.0.1.1", None),
        ("[::1]", None),
    ],
)
def test_tls_defaults_to_verify_full_for_any_host_but_loopback(host: str, sslmode: str | None) -> None:
    assert parse_postgres_url(f"postgresql://u@{host}:5432/db").sslmode == sslmode


def test_an_explicit_sslmode_and_ca_bundle_reach_libpq(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def connect(**options: Any) -> None:
        seen.update(options)
        raise psycopg.OperationalError("not connecting in this test")

    monkeypatch.setattr(psycopg, "connect", connect)
    for url, expected in [
        ("postgresql://u@db.internal/db", {"sslmode": "verify-full"}),
        (
            "postgresql://u@db.internal/db?sslrootcert=system",
            {"sslmode": "verify-full", "sslrootcert": "system"},
        ),
        ("postgresql://u@db.internal/db?sslmode=require", {"sslmode": "require"}),
        ("postgresql://u@127.0.0.1/db", {}),
    ]:
        seen.clear()
        with pytest.raises(psycopg.OperationalError):
            PostgresWarehouse(parse_postgres_url(url))._connect()
        assert {k: seen[k] for k in ("sslmode", "sslrootcert") if k in seen} == expected, url
    with pytest.raises(WarehouseError, match="sslmode must be one of"):
        parse_postgres_url("postgresql://u@db.internal/db?sslmode=verify_full")


def test_verify_full_refuses_a_server_without_tls(postgres_server: PgServer) -> None:
    url = (
        f"postgresql://{TEST_ROLE}@127.0.0.1:{postgres_server.port}/{DATABASE}"
        "?sslmode=verify-full&max_attempts=1"
    )
    wh = PostgresWarehouse(parse_postgres_url(url), password=_password())

    with pytest.raises(WarehouseError, match=r"SSL|certificate|root"):
        wh.committed("engagement")


def test_a_staged_file_without_an_engagement_column_is_a_clear_error(
    make_postgres: Any, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    from tests.sinks.warehouse.data import arrow_table

    batch = write_local_batch(tmp_path, "engagement", 1, [make_rows(1)])
    pq.write_table(arrow_table(make_rows(1)).drop_columns(["clicks"]), batch.files[0])
    wh = make_postgres()
    wh.init()

    with pytest.raises(WarehouseError, match="lacks column"):
        wh.load_batch(batch)
    assert wh.committed("engagement") == []


def test_init_is_idempotent_and_check_finds_nothing(make_postgres: Any) -> None:
    wh = make_postgres()
    init_warehouse(wh)
    init_warehouse(wh)
    make_postgres().init()

    assert wh.check() == []


def test_check_reports_dropped_changed_and_extra_columns(
    make_postgres: Any, postgres_server: PgServer, schema: str
) -> None:
    wh = make_postgres()
    wh.init()
    with postgres_server.admin() as conn:
        conn.execute(f"DROP VIEW {schema}.{sql.VIEW_TOP_CTR}")
        conn.execute(f"ALTER TABLE {schema}.content_engagement DROP COLUMN clicks CASCADE")
        conn.execute(f"ALTER TABLE {schema}.content_engagement ALTER COLUMN ctr TYPE real")
        conn.execute(f"ALTER TABLE {schema}.content_engagement ADD COLUMN note text")
        conn.execute(f"DROP TABLE {schema}.content_dim")

    problems = wh.check()

    table = f"{schema}.content_engagement"
    assert f"{table}: missing column clicks (bigint)" in problems
    assert f"{table}: column ctr is real, expected double precision" in problems
    assert f"{table}: unexpected column note (text)" in problems
    assert f"{schema}.content_dim: table is missing" in problems
    assert f"{schema}.{sql.VIEW_TOP_CTR}: view is missing" in problems


# ------------------------------------------------------------------------------------------- views


def _wilson_lower(k: int, n: int, z: float = 1.96) -> float | None:
    if n == 0:
        return None
    p = min(k / n, 1.0)
    return (p + z * z / (2 * n) - z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)


def _view(server: PgServer, schema: str, name: str, order: str) -> list[dict[str, Any]]:
    with server.admin() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(f"SELECT * FROM {schema}.{name} ORDER BY {order}").fetchall()


@pytest.fixture
def loaded(make_postgres: Any, tmp_path: Path) -> list[Row]:
    rows = make_rows(1, contents=("c1", "c2", "c3"), windows=3, platforms=("web", "ios", "tv"))
    # c3 has no row in the middle window, so its last window has no previous one.
    rows = [
        r
        for r in rows
        if not (r["content_id"] == "c3" and r["window_start"] == rows[0]["window_start"] + WINDOW)
    ]
    wh = make_postgres()
    wh.init()
    closed = max(r["window_end"] for r in rows)  # every window is final
    wh.load_batch(write_local_batch(tmp_path, "engagement", 1, [rows], watermark=closed))
    return rows


def test_top_ctr_view_ranks_by_the_wilson_lower_bound(
    loaded: list[Row], postgres_server: PgServer, schema: str
) -> None:
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in loaded:
        sums[r["content_id"]][0] += r["clicks"]
        sums[r["content_id"]][1] += r["impressions"]

    got = _view(postgres_server, schema, sql.VIEW_TOP_CTR, "ctr_wilson_lower DESC")

    expected = sorted(sums, key=lambda c: -_wilson_lower(*sums[c]))  # type: ignore[operator]
    assert [g["content_id"] for g in got] == expected
    for g in got:
        clicks, impressions = sums[g["content_id"]]
        assert (g["clicks"], g["impressions"]) == (clicks, impressions)
        assert g["ctr"] == pytest.approx(clicks / impressions)
        assert g["ctr_wilson_lower"] == pytest.approx(_wilson_lower(clicks, impressions), rel=1e-9)
        assert g["ctr_wilson_lower"] < g["ctr"]


def test_trending_view_compares_each_window_with_the_previous_one(
    loaded: list[Row], postgres_server: PgServer, schema: str
) -> None:
    per_window: dict[tuple[str, Any], int] = defaultdict(int)
    for r in loaded:
        per_window[(r["content_id"], r["window_start"])] += r["impressions"]

    got = _view(postgres_server, schema, sql.VIEW_TRENDING, "content_id, window_start")

    assert [(g["content_id"], g["window_start"]) for g in got] == sorted(per_window)
    for g in got:
        current = per_window[(g["content_id"], g["window_start"])]
        previous = per_window.get((g["content_id"], g["window_start"] - WINDOW))
        assert g["impressions"] == current
        assert g["prev_impressions"] == (previous or 0)
        if previous:
            assert g["impressions_growth"] == pytest.approx((current - previous) / previous)
        else:
            assert g["impressions_growth"] is None


def test_trending_view_leaves_out_windows_still_open(
    make_postgres: Any, tmp_path: Path, postgres_server: PgServer, schema: str
) -> None:
    rows = make_rows(1, contents=("c1",), windows=3, platforms=("web",))
    wh = make_postgres()
    wh.init()
    last_closed = rows[0]["window_start"] + 2 * WINDOW  # the third window is still open
    wh.load_batch(write_local_batch(tmp_path, "engagement", 1, [rows], watermark=last_closed))

    got = _view(postgres_server, schema, sql.VIEW_TRENDING, "window_start")

    assert [g["window_end"] for g in got] == [rows[0]["window_start"] + WINDOW, last_closed]


def test_engagement_mix_view_gives_completion_and_watch_time_per_type_and_platform(
    loaded: list[Row], postgres_server: PgServer, schema: str
) -> None:
    sums: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in loaded:
        s = sums[(r["content_type"], r["platform"])]
        s[0] += r["play_starts"]
        s[1] += r["completions"]
        s[2] += r["watch_time_ms"]

    got = _view(postgres_server, schema, sql.VIEW_ENGAGEMENT_MIX, "content_type, platform")

    assert [(g["content_type"], g["platform"]) for g in got] == sorted(sums)
    for g in got:
        plays, completions, watch_ms = sums[(g["content_type"], g["platform"])]
        assert g["day"] == loaded[0]["window_start"].replace(hour=0, minute=0)
        assert (g["play_starts"], g["completions"], g["watch_time_ms"]) == (plays, completions, watch_ms)
        assert g["completion_rate"] == pytest.approx(completions / plays)
        assert g["avg_watch_s_per_play"] == pytest.approx(watch_ms / 1000 / plays)
        assert g["is_final"] is True


# ------------------------------------------------------------------------------- content dimension


def _dim(server: PgServer, schema: str) -> list[tuple[Any, ...]]:
    with server.admin() as conn:
        return conn.execute(
            f"SELECT content_id, title, category, content_type, duration_s, publisher, published_at "
            f"FROM {schema}.content_dim ORDER BY content_id"
        ).fetchall()


def _expected_dim(rows: list[Row], from_csv: bool = False) -> list[tuple[Any, ...]]:
    """The reader of the streaming job reads an empty CSV field as an empty string, not NULL."""
    if from_csv:
        rows = [{k: "" if v is None else v for k, v in r.items()} for r in rows]
    return sorted(tuple(r.values()) for r in rows)


def test_sync_dimensions_replaces_the_content_dimension_idempotently(
    make_postgres: Any, postgres_server: PgServer, schema: str, tmp_path: Path
) -> None:
    wh = make_postgres()
    wh.init()
    csv_path = tmp_path / "content.csv"
    rows = dim_rows(5)
    pacsv.write_csv(dim_table(rows), csv_path)
    parquet_path = tmp_path / "content.parquet"
    import pyarrow.parquet as pq

    pq.write_table(dim_table(rows[:2]), parquet_path)

    assert sync_dimensions(wh, str(csv_path)) == 5
    assert sync_dimensions(wh, str(csv_path)) == 5
    assert _dim(postgres_server, schema) == _expected_dim(rows, from_csv=True)

    assert sync_dimensions(wh, str(parquet_path)) == 2
    assert _dim(postgres_server, schema) == _expected_dim(rows[:2])


def test_sync_dimensions_refuses_duplicate_ids_and_keeps_the_old_rows(
    make_postgres: Any, postgres_server: PgServer, schema: str, tmp_path: Path
) -> None:
    wh = make_postgres()
    wh.init()
    good = tmp_path / "good.csv"
    pacsv.write_csv(dim_table(dim_rows(3)), good)
    sync_dimensions(wh, str(good))
    bad = tmp_path / "bad.csv"
    pacsv.write_csv(dim_table([*dim_rows(3), dim_rows(1)[0]]), bad)

    with pytest.raises(WarehouseError, match=r"content_id not unique \(c1\)"):
        sync_dimensions(wh, str(bad))
    with pytest.raises(WarehouseError, match=r"content dimension.*missing\.csv"):
        sync_dimensions(wh, str(tmp_path / "missing.csv"))
    assert _dim(postgres_server, schema) == _expected_dim(dim_rows(3), from_csv=True)
