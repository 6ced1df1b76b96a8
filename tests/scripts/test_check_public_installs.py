"""The install guard `make lint` runs: it names file and line of every install from a local path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_public_installs.py"


def guard(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, files)], capture_output=True, text=True, check=False
    )


def test_this_checkout_installs_from_the_public_index_only():
    done = guard()
    assert done.returncode == 0, done.stderr
    assert "files checked" in done.stdout


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("constraints.txt", "pyspark @ file:///home/someone/pyspark-4.0.5.tar.gz"),
        ("constraints.txt", "/abs/path/pkg-1.0-py3-none-any.whl"),
        ("requirements.txt", "-e ./vendored"),
        ("requirements-dev.txt", "--find-links /wheels"),
        ("constraints.txt", "duckdb @ ../duckdb"),
        ("pyproject.toml", 'dependencies = ["pyspark @ /opt/pyspark-4.0.5.tar.gz"]'),
        ("Makefile", "\t$(BIN)/pip install --find-links=/tmp/wheels pyspark==4.0.5"),
        ("Makefile", "\t$(BIN)/python -m pip install /opt/pyspark-4.0.5.tar.gz"),
        ("Dockerfile", "RUN pip install --no-deps /dist/mediapulse-0.1.0-py3-none-any.whl /w/pyspark.whl"),
        ("Dockerfile", "ENV PIP_INDEX_URL=file:///srv/simple"),
    ],
)
def test_a_local_install_fails_naming_file_and_line(tmp_path: Path, name: str, line: str):
    before = {
        "pyproject.toml": '[project]\nname = "x"\n',
        "Makefile": "install:\n",
        "Dockerfile": "FROM python:3.11-slim-bookworm\n",
    }.get(name, "# pinned\npyspark==4.0.5\n")
    path = tmp_path / name
    path.write_text(before + line + "\n")
    number = before.count("\n") + 1

    done = guard(path)

    assert done.returncode == 1
    first = done.stderr.splitlines()[0]
    assert first.startswith(f"{path}:{number}: "), done.stderr
    assert line.strip().split()[-1] in first


def test_pinned_packages_and_the_project_itself_pass(tmp_path: Path):
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("pyspark==4.0.5\n-e .\n--index-url https://pypi.org/simple\n# file:///in/a/comment\n")
    makefile = tmp_path / "Makefile"
    makefile.write_text('install:\n\t$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"\n')
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM python:3.11-slim-bookworm\n"
        "RUN python -m pip wheel --no-deps . -w /dist \\\n"
        "    && pip install --constraint constraints.txt /dist/mediapulse-*.whl\n"
    )

    done = guard(constraints, makefile, dockerfile)

    assert done.returncode == 0, done.stderr
