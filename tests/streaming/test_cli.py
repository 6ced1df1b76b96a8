"""The `mediapulse` command as a user runs it: a real process, real signals."""

from __future__ import annotations

import argparse
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from importlib.metadata import version

import duckdb
import pytest

from sinks.warehouse.duckdb import DuckDBWarehouse
from streaming.cli import build_parser, main
from tests import oracle
from tests.pipeline import make_scenario, pipeline_config, warehouse_rows

METRICS = ("impressions", "clicks", "play_starts", "completions", "watch_time_ms")


def config_args(root) -> list[str]:
    return [
        "--set", f"source.path={root / 'incoming'}",
        "--set", f"dimensions.content_path={root / 'dimensions' / 'content.csv'}",
        "--set", f"lake.path={root / 'lake'}",
        "--set", f"warehouse.url=duckdb:///{root / 'warehouse.duckdb'}",
        "--set", f"checkpoint.path={root / 'checkpoints'}",
        "--set", f"metrics.path={root / 'metrics.jsonl'}",
        "--set", "trigger.interval=1 s",
        "--set", "trigger.viewers_interval=1 s",
    ]  # fmt: skip


def test_sigterm_stops_after_the_current_batch_with_exact_totals(tmp_path):
    scenario = make_scenario(tmp_path, events=1200, files=3, contents=40, users=200, seed=21)
    scenario.release()
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streaming.cli", "run", *config_args(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    seen: list[str] = []
    try:
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not any("[engagement] batch" in line for line in seen):
            if selector.select(timeout=5):
                line = proc.stdout.readline()
                if not line:
                    break
                seen.append(line)
        assert any("[engagement] batch" in line for line in seen), "".join(seen[-20:])
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(seen) + rest
    assert proc.returncode == 0, output[-3000:]
    assert "stopping after the current micro-batch" in output
    assert "summary ingest" in output
    truth = oracle.expected(scenario.incoming_files(), scenario.now)
    actual = warehouse_rows(pipeline_config(tmp_path))
    assert {k: {m: v[m] for m in METRICS} for k, v in actual.items()} == {
        k: {m: v[m] for m in METRICS} for k, v in truth.aggregates.items()
    }


def test_bad_configuration_exits_2_naming_the_key(capsys, caplog):
    assert main(["run", "--set", "engagement.window=soon", "--set", "lake.colour=blue"]) == 2
    assert "engagement.window" in caplog.text
    assert "lake.colour" in caplog.text


def test_bad_values_are_reported_with_the_file_variable_or_flag_they_came_from(tmp_path, monkeypatch, caplog):
    config = tmp_path / "app.yaml"
    config.write_text("engagement:\n  window: soon\n")
    monkeypatch.setenv("MEDIAPULSE__ENGAGEMENT__WATERMARK", "later")

    assert main(["run", "--config", str(config), "--set", "trigger.interval=often"]) == 2

    lines = [line for line in caplog.text.splitlines() if line.startswith("  ")]
    problems = {line.split(":")[0].strip(): line for line in lines}
    assert problems["engagement.window"].endswith(f"(from config file {config})")
    variable = "MEDIAPULSE__ENGAGEMENT__WATERMARK"
    assert problems["engagement.watermark"].endswith(f"(from environment variable {variable})")
    assert problems["trigger.interval"].endswith("(from --set trigger.interval)")


def warehouse_url(path) -> str:
    return f"warehouse.url=duckdb:///{path}"


def test_top_on_a_missing_warehouse_creates_nothing_and_says_what_to_run_first(tmp_path, caplog):
    path = tmp_path / "data" / "warehouse.duckdb"

    assert main(["top", "--set", warehouse_url(path)]) == 2

    assert list(tmp_path.iterdir()) == []
    assert str(path) in caplog.text
    assert "mediapulse run" in caplog.text


def test_top_on_a_warehouse_file_without_tables_creates_none(tmp_path, caplog):
    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()

    assert main(["top", "--set", warehouse_url(path)]) == 2

    assert "has no analyst views" in caplog.text
    with duckdb.connect(str(path), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM duckdb_tables()").fetchone() == (0,)


def test_warehouse_check_on_a_missing_warehouse_creates_nothing(tmp_path, capsys):
    path = tmp_path / "data" / "warehouse.duckdb"

    assert main(["warehouse", "check", "--set", warehouse_url(path)]) == 2

    assert list(tmp_path.iterdir()) == []
    assert str(path) in capsys.readouterr().err


def test_top_on_an_empty_warehouse_prints_an_empty_table(tmp_path, capsys):
    path = tmp_path / "w.duckdb"
    DuckDBWarehouse(str(path)).close()

    assert main(["top", "--set", warehouse_url(path)]) == 0

    assert "Top content by impressions" in capsys.readouterr().out


_WRITER = """
import sys
from sinks.warehouse.duckdb import DuckDBWarehouse

warehouse = DuckDBWarehouse(sys.argv[1])  # read-write: holds DuckDB's write lock until closed
print("holding", flush=True)
sys.stdin.readline()
warehouse.close()
"""


def test_top_reads_while_the_pipeline_holds_the_warehouse_for_a_load(tmp_path, capsys, caplog):
    path = tmp_path / "w.duckdb"
    DuckDBWarehouse(str(path)).close()
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    waiting = threading.Event()

    class SeesWaiting(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "is being written" in record.getMessage():
                waiting.set()

    handler = SeesWaiting()
    logging.getLogger("sinks.warehouse.duckdb").addHandler(handler)
    codes: list[int] = []
    reader = threading.Thread(target=lambda: codes.append(main(["top", "--set", warehouse_url(path)])))
    caplog.set_level(logging.INFO, logger="sinks.warehouse.duckdb")
    try:
        assert writer.stdout.readline() == "holding\n"
        reader.start()
        assert waiting.wait(timeout=20), "top did not wait for the writer's lock"
        writer.communicate("done\n", timeout=20)
        reader.join(timeout=40)
    finally:
        logging.getLogger("sinks.warehouse.duckdb").removeHandler(handler)
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert codes == [0]
    assert "Top content by impressions" in capsys.readouterr().out


def exit_code(argv: list[str]) -> int:
    """The exit code of ``mediapulse argv``, whether argparse exits or the command returns."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code or 0)


DAY1, DAY2 = "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["top", "--limit", "-3"], "argument --limit: must be at least 1"),
        (["top", "--by", "views"], "argument --by: invalid choice"),
        (["simulate"], "--out DIR is required"),
        (["backfill", "--from", "yesterday", "--to", DAY2], "not an ISO 8601 time"),
        (["backfill", "--from", "2026-11-01T00:00:00", "--to", DAY2], "has no time zone"),
        (["backfill", "--from", DAY2, "--to", DAY1], "must be after --from"),
        (["top", "--since", "6h", "--from", DAY1], "give --since or --from, not both"),
        (["top", "--since", "soon"], "argument --since: not a duration"),
        (["top", "--from", DAY2, "--to", DAY1], "must be after the range's start"),
        (["top", "--min-impressions", "-1"], "argument --min-impressions: must be 0 or more"),
        (["top", "--format", "xml"], "argument --format: invalid choice"),
        (["rank", "--placement", "home_hero"], "the following arguments are required: --affiliate"),
        (["rank", "--affiliate", "a1", "--placement", "p", "--by", "views"], "argument --by: invalid choice"),
    ],
)
def test_bad_arguments_end_with_one_line_and_exit_2(argv, message, capsys):
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(f"mediapulse {argv[0]}: error: ")
    assert message in err.splitlines()[-1]
    assert "Traceback" not in err


@pytest.fixture
def no_jvm(monkeypatch):
    """Fail the test if a command builds a SparkSession."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("the command started Spark")

    monkeypatch.setattr("streaming.session.build_session", refuse)


def test_run_with_a_missing_source_path_fails_before_spark_starts(tmp_path, caplog, no_jvm):
    missing = tmp_path / "incoming"

    assert main(["run", "--available-now", "--set", f"source.path={missing}"]) == 2

    assert f"source.path '{missing}' does not exist" in caplog.text
    assert f"mediapulse simulate --out {missing}" in caplog.text


def test_run_with_a_missing_content_dimension_fails_before_spark_starts(tmp_path, caplog, no_jvm):
    incoming, missing = tmp_path / "incoming", tmp_path / "dimensions" / "content.csv"
    incoming.mkdir()
    overrides = ["--set", f"source.path={incoming}", "--set", f"dimensions.content_path={missing}"]

    assert main(["run", "--available-now", *overrides]) == 2

    assert f"dimensions.content_path '{missing}' does not exist" in caplog.text


def test_backfill_without_an_event_log_fails_before_spark_starts(tmp_path, caplog, no_jvm):
    argv = ["backfill", "--from", "2026-11-01T00:00:00Z", "--to", "2026-11-01T06:00:00Z"]

    assert main([*argv, "--set", f"lake.path={tmp_path / 'lake'}"]) == 2

    assert f"{tmp_path / 'lake'}/events does not exist" in caplog.text


def test_version_names_the_installed_release(capsys):
    assert exit_code(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mediapulse {version('mediapulse')}"


def test_verbose_is_accepted_before_or_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["top"]).verbose is False
    assert parser.parse_args(["-v", "top"]).verbose is True
    assert parser.parse_args(["top", "-v"]).verbose is True
    assert parser.parse_args(["warehouse", "check", "--verbose"]).verbose is True


def _options(parser: argparse.ArgumentParser, command: str) -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _options(child, f"{command} {name}")
        else:
            found.append((command, action))
    return found


def test_every_option_of_every_command_has_help_text():
    undocumented = [
        f"{command} {'/'.join(action.option_strings) or action.dest}"
        for command, action in _options(build_parser(), "mediapulse")
        if not action.help or action.help == argparse.SUPPRESS
    ]
    assert undocumented == []


def test_top_level_help_is_an_overview_for_users(capsys):
    assert exit_code(["--help"]) == 0
    text = capsys.readouterr().out
    assert "Streaming engagement analytics" in text
    assert "mediapulse simulate --out data/incoming" in text
    assert "``" not in text and "entry point wires" not in text
    for command in ("simulate", "run", "backfill", "top", "warehouse", "emr"):
        assert f"    {command} " in text


def test_a_refused_postgres_connection_is_reported_once(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://someone@127.0.0.1:{port}/db?max_attempts=3&retry_base_ms=10"
    env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "MEDIAPULSE_WAREHOUSE_PASSWORD")}
    done = subprocess.run(
        [sys.executable, "-m", "streaming.cli", "top", "--set", f"warehouse.url={url}"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    lines = (done.stdout + done.stderr).splitlines()
    assert len(lines) == 1, lines
    assert "Connection refused" in lines[0]


def test_top_and_rank_print_csv_and_json_from_the_views(tmp_path, capsys):
    import csv
    import io
    import json

    from tests.sinks.warehouse.data import make_rows, write_local_batch

    path = tmp_path / "w.duckdb"
    rows = make_rows(1, contents=("c1", "c2"), affiliates=("a1",), platforms=("web",))
    with DuckDBWarehouse(str(path)) as wh:
        wh.load_batch(write_local_batch(tmp_path, "engagement", 1, [rows]))
    impressions = {c: sum(r["impressions"] for r in rows if r["content_id"] == c) for c in ("c1", "c2")}

    assert main(["top", "--format", "csv", "--affiliate", "a1", "--set", warehouse_url(path)]) == 0
    printed = csv.DictReader(io.StringIO(capsys.readouterr().out))
    got = {r["content_id"]: int(r["impressions"]) for r in printed}
    assert got == impressions

    argv = ["rank", "--affiliate", "a1", "--placement", "home_hero", "--format", "json", "--min-volume", "0"]
    assert main([*argv, "--set", warehouse_url(path)]) == 0
    ranked = json.loads(capsys.readouterr().out)
    assert {r["content_id"]: r["trials"] for r in ranked} == impressions
    assert all(r["lower"] <= r["rate"] <= r["upper"] for r in ranked)
