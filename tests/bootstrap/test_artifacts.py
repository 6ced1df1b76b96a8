from __future__ import annotations

import importlib.metadata
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

import bootstrap.artifacts as artifacts
from bootstrap.advisories import KNOWN_FIXES, pins_below_fixes
from bootstrap.artifacts import (
    PackagingError,
    Pins,
    Platform,
    build_wheelhouse,
    check_wheelhouse,
    package,
    pinned_requirements,
    refuse_known_vulnerabilities,
)
from tests.bootstrap.conftest import PROD, ROOT, prod_config
from tests.bootstrap.wheels import make_wheel, wheels_for_pins

ARM = Platform("aarch64", "3.11.6", "2.34")


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


def _wheelhouse_names(tar_path: Path) -> list[str]:
    with tarfile.open(tar_path) as tar:
        return sorted(tar.getnames())


def _local_index(*args: str | Path) -> tuple[str, ...]:
    return ("--no-index", "--find-links", *map(str, args))


def test_pip_is_given_every_manylinux_tag_the_nodes_glibc_accepts():
    tags = Platform("x86_64", "3.11.6", "2.34").pip_platforms()
    assert tags[0] == "manylinux_2_34_x86_64" and tags[-2:] == [
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
    ]
    assert len(tags) == 34 - 17 + 2
    assert ARM.abi == "cp311"


def test_the_wheelhouse_holds_the_wheels_built_for_the_nodes(tmp_path: Path, isolated_pip: None):
    index = tmp_path / "index"
    make_wheel(index, "fastlib", "1.0", "cp311-cp311-manylinux_2_28_aarch64")  # the one that fits
    make_wheel(index, "fastlib", "1.0", "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64")
    make_wheel(index, "fastlib", "1.0", "cp312-cp312-manylinux_2_28_aarch64")  # another Python
    make_wheel(index, "fastlib", "1.0", "cp311-cp311-manylinux_2_39_aarch64")  # a newer glibc
    make_wheel(index, "purelib", "2.0")
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("# pinned\nfastlib==1.0\npurelib==2.0\n")

    tar_path = build_wheelhouse(constraints, tmp_path / "out", ARM, _local_index(index))

    assert _wheelhouse_names(tar_path) == [
        "wheelhouse/TARGET",
        "wheelhouse/fastlib-1.0-cp311-cp311-manylinux_2_28_aarch64.whl",
        "wheelhouse/purelib-2.0-py3-none-any.whl",
    ]
    with tarfile.open(tar_path) as tar:
        target = tar.extractfile("wheelhouse/TARGET").read().decode()  # type: ignore[union-attr]
    assert target == "architecture=aarch64\npython=3.11.6\nglibc=2.34\n"
    check_wheelhouse(tar_path, Pins(("fastlib==1.0", "purelib==2.0")), ARM)


def test_a_pin_without_a_wheel_for_the_nodes_stops_packaging(tmp_path: Path, isolated_pip: None):
    index = tmp_path / "index"
    make_wheel(index, "x86only", "1.0", "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64")
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("x86only==1.0\n")
    with pytest.raises(PackagingError, match=r"no wheel for aarch64.*x86only"):
        build_wheelhouse(constraints, tmp_path / "out", ARM, _local_index(index))


def test_a_wheelhouse_for_other_nodes_or_missing_a_pin_is_refused(tmp_path: Path, isolated_pip: None):
    index = wheels_for_pins(tmp_path / "index", ["purelib==2.0"])
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("purelib==2.0\n")
    x86 = Platform("x86_64", "3.11.6", "2.34")
    tar_path = build_wheelhouse(constraints, tmp_path / "out", x86, _local_index(index))
    with pytest.raises(
        PackagingError, match=r"built for x86_64, CPython 3\.11\.6, glibc 2\.34; the nodes run aarch64"
    ):
        check_wheelhouse(tar_path, Pins(("purelib==2.0",)), ARM)
    with pytest.raises(PackagingError, match=r"no wheel for other-lib==1\.0"):
        check_wheelhouse(tar_path, Pins(("purelib==2.0", "other-lib==1.0")), x86)


def test_package_downloads_a_wheel_for_every_pin_of_the_release(
    built_wheel: Path, release_pins: Pins, tmp_path: Path, isolated_pip: None
):
    index = wheels_for_pins(tmp_path / "index", release_pins.lines)
    out = io.StringIO()
    result = package(
        prod_config(),
        PROD,
        dist_dir=tmp_path / "dist",
        wheel=built_wheel,
        index_args=_local_index(index),
        upload=False,
        out=out,
    )
    names = [Path(name).name for name in _wheelhouse_names(result.files["wheelhouse.tar"])]
    assert len(names) == len(release_pins.lines) + 1  # one wheel per pin, and TARGET
    assert "downloading" in out.getvalue() and "aarch64, CPython 3.11.6, glibc 2.34" in out.getvalue()


def test_known_fixes_are_reported_with_their_advisories():
    problems = pins_below_fixes(["urllib3==2.6.3", "requests==2.34.2", "Jinja2==3.1.5  # old", "six==1.0"])
    assert problems == [
        "urllib3==2.6.3 is below urllib3>=2.8.0 (CVE-2026-97687, CVE-2026-97688, CVE-2026-97689)",
        "Jinja2==3.1.5 is below jinja2>=3.1.6 (CVE-2025-27516, GHSA-cpwx-vrp4-4pq7)",
    ]


def test_no_repository_pin_is_below_a_known_fix():
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    assert pins_below_fixes(lines) == []
    pinned = {line.split("==")[0].lower() for line in lines if "==" in line}
    # the floors that matter here are pinned here: a floor for a package nobody pins guards nothing
    assert {"cryptography", "urllib3", "requests", "jinja2", "werkzeug", "setuptools"} <= pinned
    assert {fix.package for fix in KNOWN_FIXES} <= pinned


def test_the_release_closure_is_above_every_known_fix(release_pins: Pins):
    refuse_known_vulnerabilities(release_pins)
    assert any(line.startswith("setuptools==") for line in release_pins.lines)  # redshift-connector's


def test_package_refuses_a_pin_below_a_known_fix(
    built_wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(artifacts, "pinned_requirements", lambda _: Pins(("requests==2.32.3",)))
    with pytest.raises(PackagingError, match=r"requests==2.32.3 is below requests>=2.33.0 \(CVE-2026-25645"):
        package(prod_config(), PROD, dist_dir=tmp_path, wheel=built_wheel, upload=False, out=io.StringIO())


def test_the_wheel_ships_the_record_validator_compiled_and_not_its_source(built_wheel: Path):
    with zipfile.ZipFile(built_wheel) as wheel:
        names = wheel.namelist()
        jar = wheel.read("streaming/java/mediapulse-validator.jar")
    assert not [name for name in names if name.endswith(".java")]
    with zipfile.ZipFile(io.BytesIO(jar)) as classes:
        assert "mediapulse/RecordValidator.class" in classes.namelist()


def test_a_wheel_without_the_record_validator_is_refused(tmp_path: Path):
    wheel = make_wheel(tmp_path, "mediapulse", "0.1.0")
    with pytest.raises(artifacts.PackagingError, match=r"has no streaming/java/mediapulse-validator\.jar"):
        artifacts.validator_jar_of(wheel, tmp_path)
