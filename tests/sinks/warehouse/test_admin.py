"""``mediapulse warehouse init|sync-dimensions|check`` against the private PostgreSQL server."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pytest

from sinks.warehouse.admin import register, sync_dimensions
from sinks.warehouse.base import WarehouseError
from tests.sinks.warehouse.conftest import DATABASE, TEST_PASSWORD, TEST_ROLE, PgServer
from tests.sinks.warehouse.data import dim_rows, dim_table
from tests.sinks.warehouse.stub import StubWarehouse


def cli() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mediapulse")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def run(*argv: str) -> int:
    args = cli().parse_args(list(argv))
    return args.func(args)


@pytest.fixture
def config(postgres_server: PgServer, schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDIAPULSE_WAREHOUSE_PASSWORD", TEST_PASSWORD)
    dims = tmp_path / "content.csv"
    pacsv.write_csv(dim_table(dim_rows(4)), dims)
    path = tmp_path / "mediapulse.yaml"
    path.write_text(
        "warehouse:\n"
        f"  url: postgresql://{TEST_ROLE}@127.0.0.1:{postgres_server.port}/{DATABASE}?schema={schema}\n"
        "dimensions:\n"
        f"  content_path: {dims}\n"
    )
    return path


def test_commands_take_config_and_overrides() -> None:
    args = cli().parse_args(["warehouse", "check", "--config", "c.yaml", "--set", "a.b=1", "--set", "c.d=2"])

    assert (args.warehouse_command, str(args.config), args.overrides) == (
        "check",
        "c.yaml",
        ["a.b=1", "c.d=2"],
    )
    assert callable(args.func)


def test_the_mediapulse_cli_carries_the_warehouse_commands(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from streaming.cli import main

    assert main(["warehouse", "init", "--config", str(config)]) == 0
    assert main(["warehouse", "check", "--config", str(config)]) == 0
    assert "warehouse definitions match" in capsys.readouterr().out


def test_init_sync_and_check_through_the_cli(
    config: Path, postgres_server: PgServer, schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("warehouse", "init", "--config", str(config)) == 0
    assert run("warehouse", "init", "--config", str(config)) == 0
    assert run("warehouse", "sync-dimensions", "--config", str(config)) == 0
    assert run("warehouse", "check", "--config", str(config)) == 0
    out = capsys.readouterr().out
    assert "content_dim: 4 rows" in out
    assert "warehouse definitions match" in out
    assert "isolation level: loads run serializable (database default: read committed)" in out
    assert "warning:" not in out

    with postgres_server.admin() as conn:
        conn.execute(f"ALTER TABLE {schema}.content_engagement DROP COLUMN watch_time_ms CASCADE")
    assert run("warehouse", "check", "--config", str(config)) == 1
    assert f"{schema}.content_engagement: missing column watch_time_ms (bigint)" in capsys.readouterr().out


def test_cli_errors_are_one_clear_line(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run("warehouse", "init", "--config", str(config), "--set", "warehouse.url=postgresql://u:pw@h/db")
        == 1
    )
    assert "must not carry a password" in capsys.readouterr().err
    assert run("warehouse", "check", "--config", str(config), "--set", "warehouse.colour=blue") == 2
    assert "warehouse.colour: unknown key" in capsys.readouterr().err


class _Elsewhere(StubWarehouse):
    """A backend that is neither PostgreSQL nor Redshift."""


def test_other_backends_are_refused_by_name(tmp_path: Any) -> None:
    with pytest.raises(WarehouseError, match="postgresql:// and redshift://"):
        _Elsewhere().check()
    with pytest.raises(WarehouseError, match="postgresql:// and redshift://"):
        sync_dimensions(_Elsewhere(), str(tmp_path / "content.csv"))
