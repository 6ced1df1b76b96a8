from __future__ import annotations

from datetime import timedelta

import pytest

from streaming.config import AppConfig, ConfigError, load_config
from streaming.durations import spark_interval


def test_default_config_loads_with_documented_defaults():
    cfg = load_config()
    assert cfg.source.kind == "files"
    assert cfg.engagement.window == timedelta(minutes=5)
    assert cfg.engagement.watermark == timedelta(minutes=10)
    assert cfg.warehouse.url.startswith("duckdb://")


def test_set_overrides_win_over_environment_and_file():
    cfg = load_config(
        overrides=["engagement.window=2 min", "source.max_files_per_trigger=7"],
        environ={"MEDIAPULSE__ENGAGEMENT__WINDOW": "3 min", "MEDIAPULSE__LAKE__PATH": "/tmp/lake"},
    )
    assert cfg.engagement.window == timedelta(minutes=2)
    assert cfg.source.max_files_per_trigger == 7
    assert cfg.lake.path == "/tmp/lake"


def test_unknown_keys_and_bad_values_name_every_key():
    with pytest.raises(ConfigError) as err:
        load_config(
            overrides=["engagement.window=soon", "source.bogus=1", "source.kind=ftp"],
            environ={"MEDIAPULSE__LAKE__NOPE": "x"},
        )
    message = str(err.value)
    for key in ("engagement.window", "source.bogus", "source.kind", "lake.nope"):
        assert key in message


def test_kinesis_source_requires_a_stream_name():
    with pytest.raises(ConfigError, match="stream_name"):
        load_config(overrides=["source.kind=kinesis"], environ={})


def test_config_is_frozen():
    cfg = load_config(environ={})
    with pytest.raises(ValueError):
        cfg.lake.path = "elsewhere"  # type: ignore[misc]


def test_every_example_config_validates():
    from pathlib import Path

    paths = sorted(Path(__file__).parents[2].joinpath("config").glob("*.yaml"))
    assert {p.name for p in paths} >= {"local.yaml", "emr.yaml"}
    for path in paths:
        assert isinstance(load_config(path, environ={}), AppConfig), path


@pytest.mark.parametrize(
    ("text", "spark"), [("5 min", "300 seconds"), ("1h", "3600 seconds"), ("250 ms", "250 milliseconds")]
)
def test_durations_render_for_spark(text, spark):
    cfg = load_config(overrides=[f"trigger.interval={text}"], environ={})
    assert spark_interval(cfg.trigger.interval) == spark


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_each_bad_value_names_where_it_came_from(tmp_path):
    file = tmp_path / "app.yaml"
    file.write_text("engagement:\n  window: soon\n")
    with pytest.raises(ConfigError) as err:
        load_config(
            file,
            overrides=["lake.colour=blue"],
            environ={"MEDIAPULSE__ENGAGEMENT__WATERMARK": "later"},
        )
    problems = {line.split(":")[0].strip(): line for line in str(err.value).splitlines()[1:]}
    assert "'soon'" in problems["engagement.window"]
    assert problems["engagement.window"].endswith(f"(from config file {file})")
    assert "'later'" in problems["engagement.watermark"]
    variable = "MEDIAPULSE__ENGAGEMENT__WATERMARK"
    assert problems["engagement.watermark"].endswith(f"(from environment variable {variable})")
    assert problems["lake.colour"] == "  lake.colour: unknown key (from --set lake.colour)"


def test_a_section_rule_broken_by_a_flag_names_the_flag():
    with pytest.raises(ConfigError, match=r"source.stream_name is required .* \(from --set source.kind\)"):
        load_config(overrides=["source.kind=kinesis"], environ={})


def test_the_contract_s_lists_are_config_and_platforms_are_lower_case():
    lists = ["validation.platforms=[web, Roku]", "validation.event_types=[click]"]
    cfg = load_config(overrides=lists, environ={})
    assert cfg.validation.platforms == ("web", "roku")
    assert cfg.validation.event_types == ("click",)
    with pytest.raises(ConfigError, match=r"validation\.platforms: values must be non-blank and distinct"):
        load_config(overrides=["validation.platforms=[web, WEB]"], environ={})


def test_dedup_retention_shorter_than_the_watermark_is_refused():
    # Only the ingest remembers event ids: a retry inside the watermark must still be remembered.
    refused = r"dedup.retention \(300 seconds\) must be at least engagement.watermark \(600 seconds\)"
    with pytest.raises(ConfigError, match=refused):
        load_config(overrides=["dedup.retention=5 min", "engagement.watermark=10 min"], environ={})
    accepted = load_config(overrides=["dedup.retention=10 min"], environ={})
    assert accepted.dedup.retention == timedelta(minutes=10)
