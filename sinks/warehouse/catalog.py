"""What ``mediapulse warehouse check`` compares: the column definitions each table should have (derived,
like the DDL, from the table definitions) and those a catalog reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sinks.warehouse import sql
from sinks.warehouse.base import DAILY_COLUMNS, ENGAGEMENT_COLUMNS


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
        tables.daily: (DAILY_COLUMNS, sql.DAILY_SORTKEY, sql.DAILY_DISTKEY),
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


def split_name(qualified: str) -> tuple[str, str]:
    """``schema.table`` → ``(schema, table)``."""
    schema, _, name = qualified.partition(".")
    return schema, name
