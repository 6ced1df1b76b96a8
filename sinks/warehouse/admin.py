"""Warehouse administration: ``mediapulse warehouse init|sync-dimensions|check [--config FILE]
[--set key=value …]``, over each backend's own operations (``init``, ``sync_content_dim``, ``check``,
``isolation``; a backend without one refuses it by name). ``check`` also reports the isolation level loads
run at, and warns on Redshift's SNAPSHOT isolation.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any

from sinks.warehouse.base import Warehouse, WarehouseError
from streaming.commands import add_config_arguments, exit_code

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)


def init_warehouse(wh: Warehouse) -> None:
    """Create the schema, target, ledger, content dimension and analyst views (idempotent)."""
    wh.init()


def sync_dimensions(wh: Warehouse, content_path: str, fmt: str = "auto") -> int:
    """Replace ``content_dim`` with the content dimension file(s) (CSV or Parquet) in one transaction.

    Reads with the same reader and schema the streaming job uses, once the backend has accepted the
    operation. Returns the number of rows loaded.
    """

    def read() -> pa.Table:
        from streaming.sources.content_dim import DimensionError, load_table

        try:
            table = load_table(content_path, fmt)
        except DimensionError as e:
            raise WarehouseError(str(e)) from e
        _check_unique_ids(table, content_path)
        return table

    rows = wh.sync_content_dim(read)
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


# --------------------------------------------------------------------------------------------- CLI


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``warehouse init|sync-dimensions|check`` to the CLI; each sets ``func(args) -> exit code``."""
    parser = subparsers.add_parser("warehouse", help="create, load and check the warehouse tables")
    commands = parser.add_subparsers(dest="warehouse_command", metavar="COMMAND", required=True)

    def common(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_config_arguments(sub)
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
            return exit_code(e)

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
        problems = wh.check()
        level = wh.isolation()
    for line in problems:
        sys.stdout.write(f"{line}\n")
    if not problems:
        sys.stdout.write("warehouse definitions match\n")
    sys.stdout.write(f"{level.line}\n")
    if level.warning:
        sys.stdout.write(f"warning: {level.warning}\n")
    return 1 if problems else 0
