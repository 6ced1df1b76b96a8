from __future__ import annotations

import importlib.metadata

import pytest

from bootstrap.artifacts import PackagingError, pinned_requirements


def test_pins_follow_requires_dist_and_requested_extras():
    pins = pinned_requirements(["psycopg[binary]>=3"])
    names = {line.split("==")[0] for line in pins.lines}
    assert {"psycopg", "psycopg-binary"} <= names
    assert f"psycopg=={importlib.metadata.version('psycopg')}" in pins.lines
    assert pins.warnings == ()


def test_pyspark_is_left_to_emr():
    assert pinned_requirements(["pyspark>=4"]).lines == ()


def test_an_installed_version_outside_the_range_is_a_warning():
    version = importlib.metadata.version("pyyaml")
    pins = pinned_requirements(["pyyaml<1"])
    assert pins.lines == (f"pyyaml=={version}",)
    assert pins.warnings == (f"pyyaml {version} is installed but pyproject.toml asks for pyyaml<1",)


def test_a_dependency_that_is_not_installed_cannot_be_pinned():
    with pytest.raises(PackagingError, match="not-a-real-dependency-xyz"):
        pinned_requirements(["not-a-real-dependency-xyz>=1"])
