"""SQL for the PostgreSQL, Redshift and DuckDB backends, in each one's dialect, built from the table
definitions (:data:`streaming.schema.ENGAGEMENT` and :data:`streaming.schema.CONTENT_DIM`; the ledger,
the protocol's own table, is defined here).

Every statement the backends run comes from here, so the protocol reads the same on all of them and the
test suite can parse each Redshift statement (``sqlglot``, ``redshift`` dialect) and lint each MERGE.

Names passed in are validated with :func:`validate_identifier` and used unquoted (the engines fold
them to lower case). Values are never formatted into SQL: they travel as ``%s`` parameters, the one
paramstyle psycopg and redshift_connector share (the DuckDB backend passes them on as ``?``). The few
literals inlined (Redshift's COPY source and IAM role, DuckDB's staged file names) are checked against
strict patterns or quoted first.

Redshift's MERGE is narrower than PostgreSQL's (see :func:`lint_redshift_merge`): no alias on the target,
a table (not a subquery) as the source, equality predicates only in ON, exactly one ``WHEN MATCHED THEN
UPDATE`` and one ``WHEN NOT MATCHED THEN INSERT`` without extra conditions, unqualified column names on
the left of SET and in the INSERT list, and at most one source row per target row. The one MERGE built
here has that shape, and PostgreSQL 15 runs it unchanged.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sinks.warehouse import analytics
from sinks.warehouse.base import (
    COLUMN_NAMES,
    DAILY,
    DAILY_COLUMNS,
    ENGAGEMENT_COLUMNS,
    KEY,
    WarehouseError,
    validate_identifier,
)
from streaming.schema import CONTENT_DIM, ColumnType

Dialect = Literal["postgres", "redshift", "duckdb"]
DIALECTS: tuple[Dialect, ...] = ("postgres", "redshift", "duckdb")

CONTENT_DIM_TABLE = CONTENT_DIM.name
# The content dimension as streaming.sources.content_dim reads it (same names, same order).
CONTENT_DIM_COLUMNS: tuple[tuple[str, ColumnType], ...] = tuple((c.name, c.type) for c in CONTENT_DIM.columns)
LEDGER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("query_name", "string"),
    ("batch_id", "bigint"),
    ("rows", "bigint"),
    ("committed_at", "timestamp"),
    ("watermark", "timestamp"),  # the watermark the batch reached (null: a backfill)
)
LEDGER_KEY: tuple[str, ...] = ("query_name", "batch_id")

# Session-scoped scratch tables of one load (temporary: invisible to other sessions, gone with the session).
STAGE_TABLE = "mediapulse_stage"
STAGE_DEDUP_TABLE = "mediapulse_stage_dedup"
STAGE_TABLES = (STAGE_TABLE, STAGE_DEDUP_TABLE)
STAGE_VIEWERS_TABLE = "mediapulse_stage_viewers"  # the batch's daily unique-viewer rows

DAILY_TABLE = DAILY.name
VIEW_TOP_CTR = analytics.VIEW_TOP_CTR
VIEW_TRENDING = analytics.VIEW_TRENDING
VIEW_ENGAGEMENT_MIX = analytics.VIEW_ENGAGEMENT_MIX

# Redshift VARCHAR lengths are in bytes (UTF-8); a value that does not fit fails the COPY loudly.
_VARCHAR_BYTES: dict[str, int] = {
    "content_id": 128,
    "affiliate_id": 128,
    "placement": 128,
    "platform": 32,
    "title": 1024,
    "category": 256,
    "content_type": 64,
    "publisher": 256,
    "query_name": 256,
}
_DEFAULT_VARCHAR_BYTES = 256

_POSTGRES_TYPES: dict[str, str] = {
    "timestamp": "timestamp",
    "string": "text",
    "bigint": "bigint",
    "int": "integer",
    "double": "double precision",
}
_REDSHIFT_TYPES: dict[str, str] = {
    "timestamp": "TIMESTAMP",
    "bigint": "BIGINT",
    "int": "INTEGER",
    "double": "DOUBLE PRECISION",
}
_DUCKDB_TYPES: dict[str, str] = {
    "timestamp": "TIMESTAMP",
    "string": "VARCHAR",
    "bigint": "BIGINT",
    "int": "INTEGER",
    "double": "DOUBLE",
}
# AZ64 covers SMALLINT/INTEGER/BIGINT/DECIMAL/DATE/TIMESTAMP(TZ) only; DOUBLE PRECISION and VARCHAR get ZSTD.
_REDSHIFT_ENCODINGS: dict[str, str] = {
    "timestamp": "AZ64",
    "bigint": "AZ64",
    "int": "AZ64",
    "double": "ZSTD",
    "string": "ZSTD",
}

ENGAGEMENT_DISTKEY = "content_id"
ENGAGEMENT_SORTKEY: tuple[str, ...] = ("window_start", "content_id", "affiliate_id", "placement", "platform")
DAILY_DISTKEY = "content_id"
DAILY_SORTKEY: tuple[str, ...] = DAILY.key


def _check_dialect(dialect: str) -> Dialect:
    if dialect not in DIALECTS:
        raise WarehouseError(f"unknown SQL dialect {dialect!r}: use one of {', '.join(DIALECTS)}")
    return dialect  # type: ignore[return-value]


def qualify(name: str, schema: str) -> str:
    """``schema.name`` unless ``name`` already names its schema; both parts validated."""
    validate_identifier(name)
    if "." in name:
        return name
    return f"{validate_identifier(schema, 'schema')}.{name}"


def column_type(name: str, kind: ColumnType | str, dialect: Dialect) -> str:
    """The SQL type of one column in ``dialect`` (Redshift VARCHAR lengths come from the column name)."""
    if _check_dialect(dialect) == "postgres":
        return _POSTGRES_TYPES[kind]
    if dialect == "duckdb":
        return _DUCKDB_TYPES[kind]
    if kind == "string":
        return f"VARCHAR({varchar_bytes(name)})"
    return _REDSHIFT_TYPES[kind]


def varchar_bytes(name: str) -> int:
    """The width, in UTF-8 bytes, of the text column ``name`` on Redshift; the content dimension's text is
    fitted to it on every backend (:func:`streaming.sources.content_dim.fit_text`)."""
    return _VARCHAR_BYTES.get(name, _DEFAULT_VARCHAR_BYTES)


def column_encoding(kind: ColumnType | str) -> str:
    """The Redshift compression encoding of a column of logical type ``kind``."""
    return _REDSHIFT_ENCODINGS[kind]


@dataclass(frozen=True)
class Tables:
    """Fully qualified names of everything the warehouse owns, in one schema."""

    schema: str
    table: str
    ledger: str
    content_dim: str
    daily: str

    @classmethod
    def of(cls, schema: str, table: str, ledger_table: str) -> Tables:
        schema = validate_identifier(schema, "warehouse schema")
        if "." in schema:
            raise WarehouseError(f"invalid warehouse schema {schema!r}: a schema name has no dot")
        return cls(
            schema=schema,
            table=qualify(validate_identifier(table, "warehouse.table"), schema),
            ledger=qualify(validate_identifier(ledger_table, "warehouse.ledger_table"), schema),
            content_dim=qualify(CONTENT_DIM_TABLE, schema),
            daily=qualify(DAILY_TABLE, schema),
        )

    @classmethod
    def in_default_schema(cls, table: str, ledger_table: str) -> Tables:
        """Names as given, for an engine resolving bare names in its default schema (DuckDB's ``main``)."""
        return cls(
            schema="main",
            table=validate_identifier(table, "warehouse.table"),
            ledger=validate_identifier(ledger_table, "warehouse.ledger_table"),
            content_dim=CONTENT_DIM_TABLE,
            daily=DAILY_TABLE,
        )

    def view(self, name: str) -> str:
        return qualify(name, self.schema)

    def names(self) -> analytics.Names:
        """What the analyst views and reports read."""
        return analytics.Names(table=self.table, daily=self.daily, ledger=self.ledger, schema=self.schema)


# --------------------------------------------------------------------------------------------- DDL


def _column_defs(
    columns: tuple[tuple[str, str], ...], dialect: Dialect, not_null: tuple[str, ...]
) -> list[str]:
    defs = []
    for name, kind in columns:
        text = f"{name} {column_type(name, kind, dialect)}"
        if dialect == "redshift":
            text += f" ENCODE {column_encoding(kind)}"
        if name in not_null:
            text += " NOT NULL"
        defs.append(text)
    return defs


def create_schema_sql(schema: str) -> str:
    return f"CREATE SCHEMA IF NOT EXISTS {validate_identifier(schema, 'schema')}"


def _create_table_sql(
    table: str,
    columns: tuple[tuple[str, str], ...],
    key: tuple[str, ...],
    dialect: Dialect,
    redshift_layout: str,
) -> str:
    defs = _column_defs(columns, _check_dialect(dialect), key)
    defs.append(f"PRIMARY KEY ({', '.join(key)})")
    ddl = f"CREATE TABLE IF NOT EXISTS {validate_identifier(table)} (\n  " + ",\n  ".join(defs) + "\n)"
    return ddl + redshift_layout if dialect == "redshift" else ddl


def create_engagement_table_sql(table: str, dialect: Dialect) -> str:
    """The target: one row per (window, content, affiliate, platform); Redshift distributes by content."""
    layout = f"\nDISTKEY({ENGAGEMENT_DISTKEY})\nCOMPOUND SORTKEY({', '.join(ENGAGEMENT_SORTKEY)})"
    return _create_table_sql(table, ENGAGEMENT_COLUMNS, KEY, dialect, layout)


def create_daily_table_sql(daily: str, dialect: Dialect) -> str:
    """The daily unique-viewer rollup: one row per (day, content, affiliate, placement, platform)."""
    layout = f"\nDISTKEY({DAILY_DISTKEY})\nCOMPOUND SORTKEY({', '.join(DAILY_SORTKEY)})"
    return _create_table_sql(daily, DAILY_COLUMNS, DAILY.key, dialect, layout)


def create_ledger_table_sql(ledger: str, dialect: Dialect) -> str:
    layout = f"\nDISTSTYLE AUTO\nCOMPOUND SORTKEY({', '.join(LEDGER_KEY)})"
    return _create_table_sql(ledger, LEDGER_COLUMNS, LEDGER_KEY, dialect, layout)


def create_content_dim_sql(content_dim: str, dialect: Dialect) -> str:
    return _create_table_sql(content_dim, CONTENT_DIM_COLUMNS, CONTENT_DIM.key, dialect, "\nDISTSTYLE AUTO")


# ------------------------------------------------------------------------------------- load protocol

COMMIT_SQL = "COMMIT"
ROLLBACK_SQL = "ROLLBACK"


def begin_sql(dialect: Dialect) -> str:
    """The start of a load's transaction.

    PostgreSQL has to be asked for SERIALIZABLE. Redshift runs every transaction at its database's level,
    SERIALIZABLE or SNAPSHOT (``CREATE``/``ALTER DATABASE … ISOLATION LEVEL``; SNAPSHOT is the default of
    new clusters and workgroups) whatever BEGIN says, so it gets a plain BEGIN; its loads are kept apart
    by :func:`lock_sql` instead. DuckDB's transactions are snapshot-isolated, and one process writes a file.
    """
    return {
        "postgres": "BEGIN ISOLATION LEVEL SERIALIZABLE",
        "redshift": "BEGIN",
        "duckdb": "BEGIN TRANSACTION",
    }[_check_dialect(dialect)]


def lock_sql(table: str) -> str:
    """Redshift: an exclusive lock on ``table`` until the transaction ends.

    As the first statement of a load (before any read takes the transaction's snapshot), a second load
    waits here for the first to end and then sees its ledger row, at either isolation level.
    """
    return f"LOCK {validate_identifier(table)}"


def validate_query_name(name: str) -> str:
    """A query name as the ledger stores it: a bound value (not an identifier: ``backfill-…`` has hyphens),
    1 to 256 UTF-8 bytes (the Redshift column's width) without control characters."""
    limit = _VARCHAR_BYTES["query_name"]
    if not isinstance(name, str) or not name:
        raise WarehouseError(f"invalid query name {name!r}: it must be a non-empty string")
    if len(name.encode()) > limit:
        raise WarehouseError(f"invalid query name {name[:40]!r}…: longer than {limit} bytes in UTF-8")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise WarehouseError(f"invalid query name {name!r}: control characters are not allowed")
    return name


# PostgreSQL only: a transaction-level advisory lock keyed by (query, batch_id).
TRY_ADVISORY_LOCK_SQL = "SELECT pg_try_advisory_xact_lock(%s)"
ADVISORY_LOCK_SQL = "SELECT pg_advisory_xact_lock(%s)"


def session_sql(schema: str, dialect: Dialect) -> list[str]:
    """Run once per connection: the warehouse schema first on the search path (DuckDB: names resolve in
    its default schema), UTC session time zone."""
    if _check_dialect(dialect) == "duckdb":
        return ["SET TimeZone = 'UTC'"]
    return [f"SET search_path TO {validate_identifier(schema, 'schema')}", "SET timezone TO 'UTC'"]


def ledger_lookup_sql(ledger: str) -> str:
    return f"SELECT rows FROM {validate_identifier(ledger)} WHERE query_name = %s AND batch_id = %s"


def ledger_insert_sql(ledger: str) -> str:
    names = ", ".join(name for name, _ in LEDGER_COLUMNS)
    marks = ", ".join(["%s"] * len(LEDGER_COLUMNS))
    return f"INSERT INTO {validate_identifier(ledger)} ({names}) VALUES ({marks})"


def committed_sql(ledger: str) -> str:
    return f"SELECT batch_id FROM {validate_identifier(ledger)} WHERE query_name = %s ORDER BY batch_id"


def stage_sql(table: str, dialect: Dialect, stages: tuple[str, ...] = STAGE_TABLES) -> list[str]:
    """(Re)create session-temporary staging tables (by default the target's two) shaped like ``table``.

    ``LIKE`` copies column order and types (and on Redshift the distribution key, sort key and encodings),
    so a Parquet COPY, which maps columns by position, lands each column where the target expects it.
    DuckDB has no ``LIKE`` here: it copies the target's columns from an empty ``SELECT``.
    """
    table = validate_identifier(table)
    if _check_dialect(dialect) == "duckdb":
        create = [f"CREATE TEMP TABLE {name} AS SELECT * FROM {table} LIMIT 0" for name in stages]
    else:
        create = [f"CREATE TEMP TABLE {name} (LIKE {table})" for name in stages]
    return [*(f"DROP TABLE IF EXISTS {name}" for name in stages), *create]


def stage_columns(stage: str) -> tuple[tuple[str, ColumnType], ...]:
    """The columns (and logical types) of a staging table, in order."""
    return DAILY_COLUMNS if stage == STAGE_VIEWERS_TABLE else ENGAGEMENT_COLUMNS


def insert_parquet_sql(stage: str, files: Sequence[str]) -> str:
    """DuckDB only: the bulk load of the staging table, DuckDB reading the staged Parquet files itself.

    Each column is cast to its warehouse type (Spark's UTC timestamps become UTC wall-clock times in the
    session's UTC time zone); the file names are quoted literals.
    """
    if not files:
        raise WarehouseError("a Parquet load needs at least one file")
    columns = stage_columns(stage)
    names = ", ".join(name for name, _ in columns)
    casts = ",\n       ".join(
        f"CAST({name} AS {column_type(name, kind, 'duckdb')}) AS {name}" for name, kind in columns
    )
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    return (
        f"INSERT INTO {validate_identifier(stage)} ({names})\nSELECT {casts}\nFROM read_parquet([{listed}])"
    )


def copy_from_stdin_sql(table: str, columns: tuple[str, ...]) -> str:
    """PostgreSQL only: the bulk load of the staging table (and the dimension) from the client."""
    names = ", ".join(validate_identifier(c) for c in columns)
    return f"COPY {validate_identifier(table)} ({names}) FROM STDIN (FORMAT csv)"


def stage_count_sql() -> str:
    return f"SELECT COUNT(*) FROM {STAGE_TABLE}"


def duplicate_keys_sql() -> str:
    """How many keys occur more than once in the staging table (usually none: Spark aggregates by key)."""
    return (
        f"SELECT COUNT(*) FROM (SELECT 1 FROM {STAGE_TABLE} GROUP BY {', '.join(KEY)} HAVING COUNT(*) > 1)"
        " AS duplicated"
    )


def dedup_stage_sql() -> str:
    """Keep one staged row per key (the newest), since MERGE rejects two source rows for one target row."""
    names = ", ".join(COLUMN_NAMES)
    return (
        f"INSERT INTO {STAGE_DEDUP_TABLE} ({names})\n"
        f"SELECT {names} FROM (\n"
        f"  SELECT {names}, ROW_NUMBER() OVER (\n"
        f"    PARTITION BY {', '.join(KEY)} ORDER BY updated_at DESC, batch_id DESC\n"
        f"  ) AS mp_rank\n"
        f"  FROM {STAGE_TABLE}\n"
        f") AS ranked\n"
        f"WHERE mp_rank = 1"
    )


def merge_sql(
    target: str,
    source: str = STAGE_DEDUP_TABLE,
    key: tuple[str, ...] = KEY,
    columns: tuple[str, ...] = COLUMN_NAMES,
) -> str:
    """Upsert ``source`` into ``target`` by ``key``, replacing every non-key column of matched rows.

    The target is referred to by its full name (Redshift allows no alias on it); the source is a table.
    By default the engagement target; the daily rollup passes its own key and columns.
    """
    target = validate_identifier(target)
    source = validate_identifier(source)
    on = " AND ".join(f"{target}.{k} = s.{k}" for k in key)
    updates = ",\n    ".join(f"{c} = s.{c}" for c in columns if c not in key)
    values = ", ".join(f"s.{c}" for c in columns)
    return (
        f"MERGE INTO {target}\n"
        f"USING {source} AS s\n"
        f"ON {on}\n"
        f"WHEN MATCHED THEN UPDATE SET\n    {updates}\n"
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(columns)})\n"
        f"VALUES ({values})"
    )


# ------------------------------------------------------------------------------- content dimension


def replace_dim_sql(content_dim: str) -> tuple[str, str]:
    """DELETE (not TRUNCATE: on Redshift TRUNCATE commits at once) and the INSERT prefix of the reload."""
    content_dim = validate_identifier(content_dim)
    names = ", ".join(name for name, _ in CONTENT_DIM_COLUMNS)
    return f"DELETE FROM {content_dim}", f"INSERT INTO {content_dim} ({names}) VALUES "


def values_rows_sql(prefix: str, width: int, rows: int) -> str:
    """``prefix`` followed by ``rows`` groups of ``width`` ``%s`` placeholders (a multi-row INSERT)."""
    group = "(" + ", ".join(["%s"] * width) + ")"
    return prefix + ", ".join([group] * rows)


# ---------------------------------------------------------------------------------------- Redshift

_S3_URL = re.compile(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]/[A-Za-z0-9!\-_.*()/=+,:@ ]+$")
_IAM_ROLE = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/\-]{1,512}$")


def validate_iam_role(role: str) -> str:
    """An IAM role ARN (or ``default``, the role set as the cluster's default)."""
    if role != "default" and not _IAM_ROLE.match(role):
        raise WarehouseError(f"invalid iam_role {role!r}: expected arn:aws:iam::<account>:role/<name>")
    return role


def copy_parquet_manifest_sql(stage: str, manifest_url: str, iam_role: str) -> str:
    """``COPY stage FROM 's3://…manifest' IAM_ROLE … FORMAT AS PARQUET MANIFEST``.

    Parquet columns map to the stage's columns by position; a Parquet manifest must carry each file's
    ``meta.content_length``.
    """
    if not _S3_URL.match(manifest_url):
        raise WarehouseError(f"manifest location {manifest_url!r} is not a plain s3://bucket/key URL")
    role = "default" if validate_iam_role(iam_role) == "default" else f"'{iam_role}'"
    return (
        f"COPY {validate_identifier(stage)}\n"
        f"FROM '{manifest_url}'\n"
        f"IAM_ROLE {role}\n"
        "FORMAT AS PARQUET\n"
        "MANIFEST"
    )


# The newest load errors of this session (a failed COPY's transaction is rolled back first; the system
# views keep the rows). The session's pid is read first and bound: PG_BACKEND_PID() is a leader-node
# function, which Redshift will not mix into a query over the SYS/STL views.
BACKEND_PID_SQL = "SELECT PG_BACKEND_PID()"
LOAD_ERROR_DETAIL_SQL = (
    "SELECT TRIM(file_name), line_number, TRIM(column_name), TRIM(column_type), error_code,\n"
    "       TRIM(error_message)\n"
    "FROM sys_load_error_detail\n"
    "WHERE session_id = %s\n"
    "ORDER BY start_time DESC\n"
    "LIMIT 10"
)
STL_LOAD_ERRORS_SQL = (
    "SELECT TRIM(filename), line_number, TRIM(colname), TRIM(type), err_code, TRIM(err_reason)\n"
    "FROM stl_load_errors\n"
    "WHERE session = %s\n"
    "ORDER BY starttime DESC\n"
    "LIMIT 10"
)
# Redshift's catalog of one table (pg_table_def lists only tables in schemas on the search_path).
PG_TABLE_DEF_SQL = (
    'SELECT "column", type, encoding, distkey, sortkey FROM pg_table_def\n'
    "WHERE schemaname = %s AND tablename = %s"
)
SVV_TABLE_INFO_SQL = (
    'SELECT diststyle, sortkey1, sortkey_num FROM svv_table_info WHERE "schema" = %s AND "table" = %s'
)
# Redshift: the database's isolation level ('Serializable' or 'Snapshot Isolation'); the name is bound,
# since CURRENT_DATABASE() is a leader-node function.
REDSHIFT_ISOLATION_SQL = "SELECT TRIM(isolation_level) FROM stv_db_isolation_level WHERE TRIM(db_name) = %s"
# PostgreSQL: the level of transactions that do not ask for one (loads ask for SERIALIZABLE).
POSTGRES_ISOLATION_SQL = "SELECT current_setting('default_transaction_isolation')"
# PostgreSQL's (and Redshift's) standard catalog: columns in order.
INFORMATION_SCHEMA_COLUMNS_SQL = (
    "SELECT column_name, data_type FROM information_schema.columns\n"
    "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position"
)
VIEWS_SQL = "SELECT table_name FROM information_schema.views WHERE table_schema = %s"


# ------------------------------------------------------------------------------------ analyst views


def create_views_sql(tables: Tables, dialect: Dialect) -> list[str]:
    """The analyst views (:mod:`sinks.warehouse.analytics`) rendered for ``dialect``."""
    return analytics.create_views_sql(tables.names(), _check_dialect(dialect))


def init_sql(tables: Tables, dialect: Dialect) -> list[str]:
    """Every statement of ``init``, in order; each is idempotent. DuckDB, a local file, has no content
    dimension (the engagement rows carry the content's attributes) but the same views."""
    tables_sql = [
        create_engagement_table_sql(tables.table, dialect),
        create_ledger_table_sql(tables.ledger, dialect),
        create_daily_table_sql(tables.daily, dialect),
    ]
    if _check_dialect(dialect) == "duckdb":
        return [*tables_sql, *create_views_sql(tables, dialect)]
    return [
        create_schema_sql(tables.schema),
        *tables_sql,
        create_content_dim_sql(tables.content_dim, dialect),
        *create_views_sql(tables, dialect),
    ]


# --------------------------------------------------------------------------------- Redshift MERGE lint


def lint_redshift_merge(sql: str) -> list[str]:
    """Problems that make Redshift reject a MERGE (empty when it has the one accepted form).

    Redshift accepts ``MERGE INTO target USING source_table [AS alias] ON <equalities> WHEN MATCHED THEN
    {UPDATE SET col = expr, … | DELETE} WHEN NOT MATCHED THEN INSERT [(cols)] VALUES (…)``: no alias on
    the target, a table (not a view or subquery) as the source, no extra conditions on the WHEN clauses,
    no ``WHEN NOT MATCHED BY SOURCE``, and column names without a table on the left of SET and in the
    INSERT list.
    """
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read="redshift")
    except sqlglot.errors.ParseError as e:
        return [f"does not parse as Redshift SQL: {e}"]
    if not isinstance(tree, exp.Merge):
        return [f"not a MERGE statement ({type(tree).__name__})"]

    problems: list[str] = []
    target = tree.this
    if not isinstance(target, exp.Table):
        problems.append("the MERGE target must be a table")
    elif target.alias:
        problems.append(f"the MERGE target may not have an alias ({target.alias!r})")

    source = tree.args.get("using")
    if not isinstance(source, exp.Table):
        kind = type(source).__name__ if source is not None else "nothing"
        problems.append(f"the MERGE source must be a table, not a {kind}")

    on = tree.args.get("on")
    if on is None:
        problems.append("the MERGE has no ON condition")
    else:
        for predicate in _conjuncts(on):
            if not isinstance(predicate, exp.EQ):
                problems.append(
                    f"ON may hold only equality predicates joined by AND, found {predicate.sql()!r}"
                )
            elif not (
                isinstance(predicate.this, exp.Column) and isinstance(predicate.expression, exp.Column)
            ):
                problems.append(
                    f"ON predicates must compare a target column with a source column: {predicate.sql()!r}"
                )

    whens_node = tree.args.get("whens")
    whens = list(whens_node.expressions) if whens_node is not None else []
    matched = [w for w in whens if w.args.get("matched")]
    not_matched = [w for w in whens if not w.args.get("matched")]
    if len(matched) != 1 or len(not_matched) != 1:
        problems.append(
            f"exactly one WHEN MATCHED and one WHEN NOT MATCHED clause are required "
            f"(found {len(matched)} and {len(not_matched)})"
        )
    for when in whens:
        label = "WHEN MATCHED" if when.args.get("matched") else "WHEN NOT MATCHED"
        if when.args.get("condition") is not None:
            problems.append(f"{label} may not have an extra AND condition")
        if when.args.get("source"):
            problems.append("WHEN NOT MATCHED BY SOURCE is not supported")
        then = when.args.get("then")
        if when.args.get("matched"):
            if isinstance(then, exp.Update):
                for assignment in then.expressions:
                    column = assignment.this if isinstance(assignment, exp.EQ) else None
                    if not isinstance(column, exp.Column):
                        problems.append(f"UPDATE SET needs column = expr, found {assignment.sql()!r}")
                    elif column.table:
                        problems.append(f"UPDATE SET column {column.sql()!r} may not name its table")
            elif not (isinstance(then, exp.Var) and then.name.upper() == "DELETE"):
                problems.append(f"{label} must UPDATE SET or DELETE")
        elif isinstance(then, exp.Insert):
            columns = then.this.expressions if isinstance(then.this, exp.Tuple) else []
            for column in columns:
                if isinstance(column, exp.Column) and column.table:
                    problems.append(f"INSERT column {column.sql()!r} may not name its table")
            if not isinstance(then.expression, exp.Tuple):
                problems.append("WHEN NOT MATCHED THEN INSERT needs VALUES (…)")
        else:
            problems.append(f"{label} must INSERT")
    return problems


def _conjuncts(node: object) -> list[object]:
    from sqlglot import exp

    if isinstance(node, exp.Paren):
        return _conjuncts(node.this)
    if isinstance(node, exp.And):
        return [*_conjuncts(node.this), *_conjuncts(node.expression)]
    return [node]
