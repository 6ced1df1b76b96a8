"""The SQL builders: every Redshift statement parses with sqlglot's Redshift dialect, the MERGE has the one
form Redshift accepts, and the DDL carries the distribution, sort key and encodings it should."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from sinks.warehouse import analytics, sql
from sinks.warehouse.analytics import RANKINGS, TOP_ORDERINGS, Slice
from sinks.warehouse.base import COLUMN_NAMES, ENGAGEMENT_COLUMNS, KEY, StagedBatch, WarehouseError
from sinks.warehouse.redshift import RedshiftWarehouse, all_statements
from tests.sinks.warehouse.data import T0, daily_rows, dim_rows, dim_table, make_rows, write_s3_batch

TABLES = sql.Tables.of("analytics", "content_engagement", "mediapulse_batches")
ROLE = "arn:aws:iam::123456789012:role/mediapulse-copy"


# sqlglot has no grammar for Redshift's ``LOCK [TABLE] name [, …]``: that statement is checked by pattern.
_LOCK = re.compile(r"^LOCK [a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")


def parse_redshift(statement: str) -> exp.Expression:
    if statement.startswith("LOCK "):
        assert _LOCK.match(statement), f"not a LOCK of one qualified table: {statement}"
        return exp.Command(this="LOCK", expression=exp.Literal.string(statement[5:]))
    tree = sqlglot.parse_one(statement, read="redshift")
    assert not isinstance(tree, exp.Command), f"sqlglot fell back to an opaque command for: {statement}"
    return tree


@pytest.mark.parametrize("role", [ROLE, "default"])
def test_every_redshift_statement_parses(role: str) -> None:
    statements = all_statements(TABLES, role)
    assert len(statements) == len(set(statements))
    for statement in statements:
        parse_redshift(statement)


def _normalize(statement: str) -> str:
    """Collapse a multi-row VALUES list to one row, as all_statements lists it."""
    return re.sub(r"VALUES (\([^)]*\))(, \(%s(?:, %s)*\))+$", r"VALUES \1", statement)


class RecordingConnection:
    """Wraps a DB-API connection and keeps every SQL text its cursors execute."""

    def __init__(self, conn: Any, log: list[str]) -> None:
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_log", log)

    def cursor(self) -> Any:
        cur = self._conn.cursor()
        log = self._log
        execute = cur.execute

        def recording_execute(operation: str, args: Any = None, **kwargs: Any) -> Any:
            log.append(operation)
            return execute(operation, args, **kwargs)

        cur.execute = recording_execute
        return cur

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._conn, name, value)


def test_statements_sent_on_the_redshift_path_are_the_listed_ones(
    make_redshift: Any, s3_client: Any, bucket: str, tmp_path: Any
) -> None:
    sent: list[str] = []
    plain = make_redshift()
    wh: RedshiftWarehouse = make_redshift(connect=lambda: RecordingConnection(plain._connect_fn(), sent))
    viewers = daily_rows(1, T0.replace(hour=0), [("c1", "a1", "home_hero", "(all)")])
    batch = write_s3_batch(s3_client, bucket, "staging", "engagement", 1, [make_rows(1)], viewers)
    wh.load_batch(batch)
    wh.load_batch(batch)
    wh.load_batch(StagedBatch("engagement", 2, f"s3://{bucket}/staging/engagement/batch_id=2"))
    wh.committed("engagement")
    day = T0.replace(hour=0)
    every_filter = Slice(day, day + timedelta(days=1), "a", "p", "web", "c", final_only=True)
    for by in TOP_ORDERINGS:
        wh.top(Slice(), by)
        wh.top(every_filter, by)
    for ranking in RANKINGS:
        wh.rank(every_filter, ranking)  # type: ignore[arg-type]
    wh.replace_content_dim(dim_table(dim_rows(3)))

    test_loader = tuple(f"INSERT INTO {stage} (" for stage in (sql.STAGE_TABLE, sql.STAGE_VIEWERS_TABLE))
    listed = set(all_statements(wh.tables))
    ours = [s for s in sent if not s.startswith(test_loader)]
    assert ours
    for statement in ours:
        assert _normalize(statement) in listed, f"not in all_statements(): {statement}"
        parse_redshift(statement)
    merges = [s for s in ours if s.startswith("MERGE")]
    assert any(sql.DAILY_TABLE in m for m in merges) and all(sql.lint_redshift_merge(m) == [] for m in merges)
    after_begin = [ours[n + 1] for n, s in enumerate(ours) if s == sql.begin_sql("redshift")]
    lock, delete_dim = f"LOCK {wh.ledger_table}", sql.replace_dim_sql(wh.tables.content_dim)[0]
    assert after_begin == [lock, lock, lock, delete_dim]  # each of the 3 loads locks the ledger first


def test_merge_has_the_form_redshift_accepts() -> None:
    merge = sql.merge_sql(TABLES.table)

    assert sql.lint_redshift_merge(merge) == []
    tree = parse_redshift(merge)
    assert tree.this.sql() == "analytics.content_engagement"
    assert tree.args["using"].name == sql.STAGE_DEDUP_TABLE
    updated = [a.this.name for a in tree.args["whens"].expressions[0].args["then"].expressions]
    assert updated == [c for c in COLUMN_NAMES if c not in KEY]


GOOD = (
    "MERGE INTO s.t USING stage AS x ON s.t.k = x.k "
    "WHEN MATCHED THEN UPDATE SET v = x.v WHEN NOT MATCHED THEN INSERT (k, v) VALUES (x.k, x.v)"
)


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        (GOOD.replace("MERGE INTO s.t USING", "MERGE INTO s.t AS tt USING"), "target may not have an alias"),
        (GOOD.replace("USING stage AS x", "USING (SELECT * FROM stage) AS x"), "source must be a table"),
        (GOOD.replace("ON s.t.k = x.k", "ON s.t.k = x.k AND x.v > 0"), "only equality predicates"),
        (GOOD.replace("WHEN MATCHED THEN", "WHEN MATCHED AND x.v > 0 THEN"), "extra AND condition"),
        (GOOD.replace("UPDATE SET v = x.v", "UPDATE SET t.v = x.v"), "may not name its table"),
        (GOOD.replace("INSERT (k, v)", "INSERT (t.k, t.v)"), "may not name its table"),
        (
            GOOD.replace(" WHEN NOT MATCHED THEN INSERT (k, v) VALUES (x.k, x.v)", ""),
            "exactly one WHEN MATCHED",
        ),
        (GOOD + " WHEN NOT MATCHED BY SOURCE THEN DELETE", "BY SOURCE"),
        (
            GOOD.replace("WHEN NOT MATCHED", "WHEN MATCHED THEN DELETE WHEN NOT MATCHED"),
            "exactly one WHEN MATCHED",
        ),
        ("UPDATE s.t SET v = 1", "not a MERGE"),
    ],
)
def test_lint_rejects_merge_forms_redshift_does_not_accept(statement: str, problem: str) -> None:
    assert sql.lint_redshift_merge(GOOD) == []
    problems = sql.lint_redshift_merge(statement)
    assert any(problem in p for p in problems), problems


def test_redshift_target_is_distributed_by_content_and_sorted_by_window() -> None:
    ddl = sql.create_engagement_table_sql(TABLES.table, "redshift")
    tree = parse_redshift(ddl)

    assert "DISTKEY(content_id)" in ddl
    assert "COMPOUND SORTKEY(window_start, content_id, affiliate_id, placement, platform)" in ddl
    columns = {c.name: c for c in tree.find_all(exp.ColumnDef)}
    assert list(columns) == list(COLUMN_NAMES)
    for name, kind in ENGAGEMENT_COLUMNS:
        encoding = "AZ64" if kind in ("bigint", "int", "timestamp") else "ZSTD"
        assert f"{name} " in ddl and re.search(rf"\b{name} [A-Z ()0-9]+ ENCODE {encoding}\b", ddl), name


def test_redshift_side_tables_use_auto_distribution() -> None:
    assert "DISTSTYLE AUTO" in sql.create_content_dim_sql(TABLES.content_dim, "redshift")
    assert "DISTSTYLE AUTO" in sql.create_ledger_table_sql(TABLES.ledger, "redshift")


def test_postgres_ddl_has_no_redshift_clauses() -> None:
    for statement in sql.init_sql(TABLES, "postgres"):
        for clause in ("ENCODE", "DISTKEY", "SORTKEY", "DISTSTYLE", "NO SCHEMA BINDING"):
            assert clause not in statement


def test_redshift_views_are_late_binding_over_qualified_tables() -> None:
    views = sql.create_views_sql(TABLES, "redshift")

    assert len(views) == len(analytics.VIEW_NAMES)
    for view in views:
        assert view.endswith("WITH NO SCHEMA BINDING")
        tree = parse_redshift(view)
        ctes = {c.alias for c in tree.find_all(exp.CTE)}
        for table in tree.find_all(exp.Table):
            if table.name not in ctes:
                assert table.db == "analytics", f"late-binding views need schema-qualified tables: {table}"


def test_names_are_validated_and_qualified() -> None:
    assert sql.qualify("content_engagement", "analytics") == "analytics.content_engagement"
    assert sql.qualify("other.content_engagement", "analytics") == "other.content_engagement"
    with pytest.raises(WarehouseError, match="invalid warehouse schema 'bad schema'"):
        sql.Tables.of("bad schema", "t", "l")
    with pytest.raises(WarehouseError, match="has no dot"):
        sql.Tables.of("a.b", "t", "l")
    with pytest.raises(WarehouseError, match=r"invalid warehouse.ledger_table"):
        sql.Tables.of("analytics", "t", "l;drop")
    with pytest.raises(WarehouseError):
        sql.merge_sql("t t")


def test_copy_statement_refuses_unsafe_literals() -> None:
    good = sql.copy_parquet_manifest_sql("stage", "s3://bucket/p/_mediapulse.manifest", ROLE)
    assert "FORMAT AS PARQUET" in good and "MANIFEST" in good and f"IAM_ROLE '{ROLE}'" in good
    assert "IAM_ROLE default" in sql.copy_parquet_manifest_sql("stage", "s3://bucket/p/m", "default")
    with pytest.raises(WarehouseError, match="manifest location"):
        sql.copy_parquet_manifest_sql("stage", "s3://bucket/p/m' IAM_ROLE 'x", ROLE)
    with pytest.raises(WarehouseError, match="invalid iam_role"):
        sql.copy_parquet_manifest_sql("stage", "s3://bucket/p/m", "arn:aws:iam::1:role/x' --")


def test_top_rejects_unknown_orderings() -> None:
    names = TABLES.names()
    with pytest.raises(WarehouseError, match="cannot order by"):
        analytics.top_sql(names, Slice(), "1; drop table x", 10)
    with pytest.raises(WarehouseError, match="positive integer"):
        analytics.top_sql(names, Slice(), "ctr", "10; drop table x")  # type: ignore[arg-type]
    with pytest.raises(WarehouseError, match="whole number"):
        analytics.top_sql(names, Slice(), "ctr", 3, "1 OR 1=1")  # type: ignore[arg-type]
    with pytest.raises(WarehouseError, match="cannot rank by"):
        analytics.rank_sql(names, Slice(affiliate="a", placement="p"), "1; drop")  # type: ignore[arg-type]
    assert analytics.top_sql(names, Slice(), "ctr", 3)[0].endswith("LIMIT 3")


def test_redshift_loads_begin_plainly_and_postgres_loads_ask_for_serializable() -> None:
    assert sql.begin_sql("redshift") == "BEGIN"  # the database's level applies whatever BEGIN says
    assert sql.begin_sql("postgres") == "BEGIN ISOLATION LEVEL SERIALIZABLE"
    assert sql.lock_sql(TABLES.ledger) == "LOCK analytics.mediapulse_batches"
    with pytest.raises(WarehouseError, match="invalid identifier"):
        sql.lock_sql("batches; drop table x")


@pytest.mark.parametrize(
    "name",
    ["engagement", "backfill-20261101T000000-20261102T000000-20261129T101500123456", "café", "q" * 256],
)
def test_query_names_are_checked_as_values(name: str) -> None:
    assert sql.validate_query_name(name) == name


@pytest.mark.parametrize(
    ("name", "problem"),
    [("", "non-empty"), ("é" * 129, "longer than 256 bytes"), ("a\nb", "control characters")],
)
def test_query_names_that_do_not_fit_the_ledger_are_refused(name: str, problem: str) -> None:
    with pytest.raises(WarehouseError, match=problem):
        sql.validate_query_name(name)
