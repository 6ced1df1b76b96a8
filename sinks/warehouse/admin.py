"""Warehouse administration: create, load the content dimension, compare definitions; the CLI commands.

``mediapulse warehouse init|sync-dimensions|check [--config FILE] [--set key=value …]``; ``check`` also
reports the isolation level loads run at, and warns on Redshift's SNAPSHOT isolation.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sinks.warehouse import sql
from sinks.warehouse.base import ENGAGEMENT_COLUMNS, Warehouse, WarehouseError, WarehouseMissingError
from sinks.warehouse.postgres import PostgresWarehouse, SqlWarehouse
from sinks.warehouse.redshift import RedshiftWarehouse

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)


def init_warehouse(wh: Warehouse) -> None:
    """Create the schema, target, ledger, content dimension and analyst views (idempotent)."""
    wh.init()


def sync_dimensions(wh: Warehouse, content_path: str, fmt: str = "auto") -> int:
    """Replace ``content_dim`` with the content dimension file(s) (CSV or Parquet) in one transaction.

    Reads with the same reader and schema the streaming job uses. Returns the number of rows loaded.
    """
    if not isinstance(wh, SqlWarehouse):
        raise WarehouseError("sync-dimensions supports postgresql:// and redshift:// warehouses")
    from streaming.sources.content_dim import DimensionError, load_table

    try:
        table = load_table(content_path, fmt)
    except DimensionError as e:
        raise WarehouseError(str(e)) from e
    _check_unique_ids(table, content_path)
    rows = wh.replace_content_dim(table)
    log.info("content dimension replaced with %d rows from %s", rows, content_path)
    return rows


def _check_unique_ids(table: pa.Table, path: str) -> None:
    import pyarrow.compute as pc

    ids = table.column("content_id")
    if ids.null_count:
        raise WarehouseError(f"content dimension {path}: {ids.null_count} row(s) without content_id")
    counts = pc.value_counts(ids)
    duplicated = [str(v["values"]) for v in counts.to_pylist() if v["counts"] > 1]
    if duplicated:
        shown = ", ".join(duplicated[:5]) + (" …" if len(duplicated) > 5 else "")
        raise WarehouseError(f"content dimension {path}: content_id not unique ({shown})")


# ------------------------------------------------------------------------------------------- check


@dataclass(frozen=True)
class ColumnDef:
    """One column as a catalog describes it (encoding/distkey/sortkey only on Redshift)."""

    name: str
    type: str
    encoding: str | None = None
    distkey: bool = False
    sortkey: int = 0


_CATALOG_TYPES = {
    "timestamp": "timestamp without time zone",
    "bigint": "bigint",
    "int": "integer",
    "double": "double precision",
}


def _catalog_type(name: str, kind: str, dialect: sql.Dialect) -> str:
    if kind == "string":
        if dialect == "postgres":
            return "text"
        return sql.column_type(name, kind, dialect).lower().replace("varchar", "character varying")
    return _CATALOG_TYPES[kind]


def expected_tables(tables: sql.Tables, dialect: sql.Dialect) -> dict[str, list[ColumnDef]]:
    """Table name → expected columns, in order, as the catalog reports them."""
    specs: dict[str, tuple[tuple[tuple[str, str], ...], tuple[str, ...], str | None]] = {
        tables.table: (ENGAGEMENT_COLUMNS, sql.ENGAGEMENT_SORTKEY, sql.ENGAGEMENT_DISTKEY),
        tables.ledger: (sql.LEDGER_COLUMNS, sql.LEDGER_KEY, None),
        tables.content_dim: (sql.CONTENT_DIM_COLUMNS, (), None),
    }
    expected = {}
    for table, (columns, sortkey, distkey) in specs.items():
        defs = []
        for name, kind in columns:
            if dialect == "redshift":
                defs.append(
                    ColumnDef(
                        name,
                        _catalog_type(name, kind, dialect),
                        encoding=sql.column_encoding(kind).lower(),
                        distkey=name == distkey,
                        sortkey=sortkey.index(name) + 1 if name in sortkey else 0,
                    )
                )
            else:
                defs.append(ColumnDef(name, _catalog_type(name, kind, dialect)))
        expected[table] = defs
    return expected


def diff_columns(
    table: str, expected: Sequence[ColumnDef], actual: Sequence[ColumnDef], *, check_order: bool = False
) -> list[str]:
    """Differences between expected and actual column definitions of one table, one line each."""
    if not actual:
        return [f"{table}: table is missing"]
    problems = []
    found = {c.name: c for c in actual}
    wanted = {c.name for c in expected}
    for column in expected:
        have = found.get(column.name)
        if have is None:
            problems.append(f"{table}: missing column {column.name} ({column.type})")
            continue
        if have.type != column.type:
            problems.append(f"{table}: column {column.name} is {have.type}, expected {column.type}")
        if column.encoding is not None and have.encoding != column.encoding:
            problems.append(
                f"{table}: column {column.name} is encoded {have.encoding}, expected {column.encoding}"
            )
        if column.encoding is not None and have.distkey != column.distkey:
            state = "is" if have.distkey else "is not"
            problems.append(f"{table}: column {column.name} {state} the distribution key")
        if column.encoding is not None and have.sortkey != column.sortkey:
            problems.append(
                f"{table}: column {column.name} has sort key position {have.sortkey}, "
                f"expected {column.sortkey}"
            )
    for column in actual:
        if column.name not in wanted:
            problems.append(f"{table}: unexpected column {column.name} ({column.type})")
    if check_order and not problems:
        if [c.name for c in actual] != [c.name for c in expected]:
            problems.append(
                f"{table}: columns are in another order than expected (COPY maps Parquet columns by position)"
            )
    return problems


def _split(qualified: str) -> tuple[str, str]:
    schema, _, name = qualified.partition(".")
    return schema, name


def _check_views(wh: SqlWarehouse) -> list[str]:
    present = {row[0] for row in wh.fetch(sql.VIEWS_SQL, (wh.tables.schema,))}
    return [f"{wh.tables.view(name)}: view is missing" for name in sql.VIEW_NAMES if name not in present]


def _check_postgres(wh: PostgresWarehouse) -> list[str]:
    problems = []
    for table, expected in expected_tables(wh.tables, "postgres").items():
        rows = wh.fetch(sql.INFORMATION_SCHEMA_COLUMNS_SQL, _split(table))
        problems += diff_columns(table, expected, [ColumnDef(name, kind) for name, kind in rows])
    return problems + _check_views(wh)


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


def _check_redshift(wh: RedshiftWarehouse) -> list[str]:
    problems = []
    for table, expected in expected_tables(wh.tables, "redshift").items():
        schema, name = _split(table)
        table_def = wh.fetch(sql.PG_TABLE_DEF_SQL, (schema, name))
        table_info = wh.fetch(sql.SVV_TABLE_INFO_SQL, (schema, name)) if table_def else []
        distkey = sql.ENGAGEMENT_DISTKEY if table == wh.tables.table else None
        problems += redshift_table_problems(table, expected, table_def, table_info, distkey)
    return problems + _check_views(wh)


@dataclass(frozen=True)
class Isolation:
    """The isolation level loads run at, as one line, and a warning when it lets two loads both commit."""

    line: str
    warning: str | None = None


def isolation(wh: Warehouse) -> Isolation:
    """Redshift: the database's level (``stv_db_isolation_level``), with a warning on SNAPSHOT.
    PostgreSQL: loads ask for SERIALIZABLE themselves; the database's default is shown beside it."""
    if isinstance(wh, RedshiftWarehouse):
        database = wh.settings.database
        try:
            level = wh.isolation_level()
        except WarehouseError as e:
            return Isolation(f"isolation level of database {database}: unknown", f"could not read it: {e}")
        warning = None
        if "snapshot" in level.lower():
            warning = (
                f"database {database} runs SNAPSHOT isolation and Redshift does not enforce primary keys: "
                "two writers of one batch could both commit. mediapulse's loads lock "
                f"{wh.ledger_table} first and stay exactly once; any other writer of {wh.table} must take "
                f"the same lock, or run ALTER DATABASE {database} ISOLATION LEVEL SERIALIZABLE"
            )
        return Isolation(f"isolation level of database {database}: {level}", warning)
    if isinstance(wh, PostgresWarehouse):
        default = wh.fetch(sql.POSTGRES_ISOLATION_SQL, what="isolation level read")[0][0]
        return Isolation(f"isolation level: loads run serializable (database default: {default})")
    raise WarehouseError("check supports postgresql:// and redshift:// warehouses")


def check(wh: Warehouse) -> list[str]:
    """Differences between the expected and the actual table definitions (empty when all match)."""
    if isinstance(wh, RedshiftWarehouse):
        return _check_redshift(wh)
    if isinstance(wh, PostgresWarehouse):
        return _check_postgres(wh)
    raise WarehouseError("check supports postgresql:// and redshift:// warehouses")


# --------------------------------------------------------------------------------------------- CLI


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``warehouse init|sync-dimensions|check`` to the CLI; each sets ``func(args) -> exit code``."""
    parser = subparsers.add_parser("warehouse", help="create, load and check the warehouse tables")
    commands = parser.add_subparsers(dest="warehouse_command", metavar="COMMAND", required=True)

    def common(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", type=Path, help="YAML config (default: config/local.yaml)")
        sub.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config key (repeatable)",
        )
        return sub

    common("init", "create schema, tables and analyst views (idempotent)").set_defaults(func=_run_init)
    sync = common("sync-dimensions", "replace content_dim with the content dimension file(s)")
    sync.add_argument("--path", help="dimension file or folder (default: dimensions.content_path)")
    sync.set_defaults(func=_run_sync)
    common(
        "check",
        "list differences between expected and actual table definitions; report the isolation level",
    ).set_defaults(func=_run_check)
    return parser


def _open(args: argparse.Namespace, *, read_only: bool = False) -> tuple[Any, Warehouse]:
    from sinks.warehouse import open_warehouse
    from streaming.config import load_config

    cfg = load_config(args.config, args.overrides)
    return cfg, open_warehouse(cfg.warehouse, read_only=read_only)


def _guarded(run: Any) -> Any:
    def wrapper(args: argparse.Namespace) -> int:
        from streaming.config import ConfigError

        try:
            return run(args)
        except (ConfigError, WarehouseError) as e:
            sys.stderr.write(f"error: {e}\n")
            return 2 if isinstance(e, ConfigError | WarehouseMissingError) else 1

    return wrapper


@_guarded
def _run_init(args: argparse.Namespace) -> int:
    _, wh = _open(args)
    with wh:
        init_warehouse(wh)
    sys.stdout.write(f"warehouse ready: {wh.table}, {wh.ledger_table}\n")
    return 0


@_guarded
def _run_sync(args: argparse.Namespace) -> int:
    cfg, wh = _open(args)
    path = args.path or cfg.dimensions.content_path
    with wh:
        rows = sync_dimensions(wh, path, cfg.dimensions.format)
    sys.stdout.write(f"content_dim: {rows} rows from {path}\n")
    return 0


@_guarded
def _run_check(args: argparse.Namespace) -> int:
    _, wh = _open(args, read_only=True)
    with wh:
        problems = check(wh)
        level = isolation(wh)
    for line in problems:
        sys.stdout.write(f"{line}\n")
    if not problems:
        sys.stdout.write("warehouse definitions match\n")
    sys.stdout.write(f"{level.line}\n")
    if level.warning:
        sys.stdout.write(f"warning: {level.warning}\n")
    return 1 if problems else 0
