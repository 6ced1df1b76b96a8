from __future__ import annotations

import ast
import re

from tests.bootstrap.conftest import ROOT

# `tests/<dir>/test_x.py::test_name`, and `::test_other` for another test of the file named before it.
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?::(\w+)`")


def test_every_emr_test_the_reliability_table_names_exists():
    text = (ROOT / "docs" / "reliability.md").read_text()
    named: list[tuple[str, str]] = []
    current = None
    for path, name in REFERENCE.findall(text):
        current = path or current
        if str(current).startswith("tests/bootstrap/"):  # the EMR rows; other rows have their own checks
            named.append((str(current), name))
    assert len(named) >= 17
    for path, name in named:
        tree = ast.parse((ROOT / path).read_text())
        defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert name in defined, f"docs/reliability.md names {path}::{name}, which does not exist"
