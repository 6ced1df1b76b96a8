from __future__ import annotations

from pathlib import Path

import yaml

from streaming.cli import main
from streaming.config import AppConfig, FilesSourceConfig, KinesisSourceConfig, load_config
from streaming.config_docs import config_rows, config_table, with_config_table

ROOT = Path(__file__).parents[2]


def test_readme_configuration_table_is_generated_from_the_config_model():
    readme = (ROOT / "README.md").read_text()
    assert readme == with_config_table(readme), "README's configuration table is stale: run `make docs`"


def _leaves(tree: dict, prefix: str = "") -> set[str]:
    keys = set()
    for name, value in tree.items():
        if isinstance(value, dict) and value:
            keys |= _leaves(value, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def _value(config: object, key: str) -> object:
    for part in key.split("."):
        config = getattr(config, part)
    return config


# The source section is keyed on `kind`: its Kinesis keys exist in a tree that reads Kinesis.
TO_KINESIS = ["source.kind=kinesis", "source.stream_name=events"]


def _kinesis_key(key: str) -> bool:
    return key.startswith("source.") and key.removeprefix("source.") not in FilesSourceConfig.model_fields


def test_the_configuration_table_lists_every_key_of_the_config_tree():
    kinesis = AppConfig(source={"kind": "kinesis", "stream_name": "events"})
    assert {row[0] for row in config_rows()} == _leaves(AppConfig().model_dump()) | _leaves(
        kinesis.model_dump()
    )


def test_each_documented_default_loads_as_the_default_the_code_uses():
    files_defaults = AppConfig()
    kinesis_defaults = AppConfig.model_construct(source=KinesisSourceConfig.model_construct(kind="kinesis"))
    for key, default, _, _ in config_rows():
        kinesis = _kinesis_key(key)
        node = _value(kinesis_defaults if kinesis else files_defaults, key)
        if default == "unset":
            assert node is None, key
            continue
        shown = default.split("`")[1]
        overrides = [*(TO_KINESIS if kinesis else []), f"{key}={shown}"]
        loaded = _value(load_config(ROOT / "config" / "local.yaml", overrides, environ={}), key)
        assert loaded == node, f"{key}: the table says {shown!r}, the code uses {node!r}"


def test_keys_config_local_yaml_sets_differently_show_both_values():
    path = ROOT / "config" / "local.yaml"
    local, defaults = load_config(path, environ={}), AppConfig()
    set_in_file = _leaves(yaml.safe_load(path.read_text()))
    differ = {key for key in set_in_file if _value(local, key) != _value(defaults, key)}
    noted = {key for key, default, _, _ in config_rows() if "(`config/local.yaml`:" in default}
    assert noted == differ


def test_docs_config_prints_the_table(capsys):
    assert main(["docs-config"]) == 0
    assert capsys.readouterr().out == config_table()
