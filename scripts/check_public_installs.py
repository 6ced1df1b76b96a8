"""Refuse installs from a local path or a file URL; every dependency comes from the public index.

    python scripts/check_public_installs.py            check this checkout
    python scripts/check_public_installs.py FILE ...   check these files (kind taken from the name)

Checked: requirements/constraints files (``requirements*.txt|in``, ``constraints*.txt``) anywhere in the
tree, ``pyproject.toml``, ``Makefile`` and ``Dockerfile``. Flagged, with file and line:

* a ``file:`` URL anywhere outside a comment (``pkg @ file:///…``, ``--find-links file:///…``);
* a requirement that is a path (``/abs/pkg.whl``, ``./pkg``, ``-e ./x``) or ``name @ <path>``;
* ``-f/--find-links``, ``-i/--index-url`` or ``--extra-index-url`` (or ``PIP_FIND_LINKS``, ``PIP_INDEX_URL``,
  ``PIP_EXTRA_INDEX_URL``) naming a folder instead of an http(s) URL;
* in ``pyproject.toml``, a ``[tool.*.sources]`` entry with a ``path``.

The project itself is the one local thing that may be installed: ``.``, ``.[dev]`` and the wheel it
builds (``<dir>/mediapulse-*.whl``). Whether a path exists on this machine does not matter: a path is
refused wherever the check runs. Exit status 1 when anything is flagged, 0 otherwise.
"""

from __future__ import annotations

import re
import shlex
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "mediapulse"
SKIPPED_DIRS = {".git", ".venv", "node_modules", "dist", "build", "data", "__pycache__", ".pytest_cache"}
REQUIREMENT_FILES = re.compile(r"^(requirements.*\.(txt|in)|constraints.*\.txt)$")

_FILE_URL = re.compile(r"\bfile:", re.IGNORECASE)
_REMOTE = re.compile(r"^(https?|git\+https?|git\+ssh|hg\+https?|svn\+https?|bzr\+https?)://", re.IGNORECASE)
_ARCHIVE = re.compile(r"\.(whl|tar\.gz|tgz|tar\.bz2|zip)$", re.IGNORECASE)
_PROJECT_ITSELF = re.compile(rf"^(\.|\./)?(\[[\w,\s-]*\])?$|(^|/){PROJECT}-[^/]*\.whl$")
_PIP_ENV = re.compile(r"\bPIP_(FIND_LINKS|INDEX_URL|EXTRA_INDEX_URL)\s*[=\s]\s*['\"]?([^\s'\"]+)")
_PIP = re.compile(r"(^|[\s/])(pip3?(\.\d+)?|-m\s+pip)\s+(install|wheel|download)\b")
# pip options whose value names where packages come from, and options whose value is anything else.
_LOCATION_OPTIONS = {"-f", "--find-links", "-i", "--index-url", "--extra-index-url"}
_VALUE_OPTIONS = {
    "-c", "--constraint", "-r", "--requirement", "-w", "--wheel-dir", "-d", "--dest", "-t", "--target",
    "--prefix", "--root", "--log", "--cache-dir", "--src", "--python-version", "--platform",
    "--implementation", "--abi", "--only-binary", "--no-binary", "--progress-bar", "--report",
    "--trusted-host", "--timeout", "--retries", "--proxy", "--config-settings", "-C",
}  # fmt: skip
_GLUED_OPTIONS = {"-e", "-f", "-i", "-c", "-r", "-w", "-d", "-t"}


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    text: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}: {' '.join(self.text.split())}"


def _is_local(target: str) -> bool:
    """Whether an install target or package location is a path or file URL (not the project itself)."""
    target = target.strip().strip("'\"")
    if not target or _REMOTE.match(target):
        return False
    if _FILE_URL.match(target):
        return True
    if _PROJECT_ITSELF.search(target):
        return False
    return target.startswith(("/", "./", "../", "~", ".")) or "/" in target or bool(_ARCHIVE.search(target))


def _requirement_is_local(text: str) -> bool:
    """A requirement string: ``name==1.0`` is fine, ``name @ <path>`` and a bare path are not."""
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        return _is_local(text)
    return requirement.url is not None and _is_local(requirement.url)


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines joined across trailing backslashes, each with the number of its first physical line."""
    start, parts = 0, []
    for number, line in enumerate(text.splitlines(), 1):
        if not parts:
            start = number
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        parts.append(line)
        yield start, " ".join(parts)
        parts = []
    if parts:
        yield start, " ".join(parts)


def _strip_comment(line: str) -> str:
    return "" if line.lstrip().startswith("#") else re.split(r"\s#", line, maxsplit=1)[0]


def _pip_arguments(tokens: list[str]) -> Iterator[tuple[str, str]]:
    """``(option, value)`` for each location option and ``("", target)`` for each install target."""
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if len(token) > 2 and token[0] == "-" and token[1] != "-" and token[:2] in _GLUED_OPTIONS:
            token, glued = token[:2], token[2:]  # -f/dir, -e./x
            tokens = [*tokens[:index], token, glued, *tokens[index + 1 :]]
        name, eq, inline = token.partition("=")
        if name in _LOCATION_OPTIONS or name in _VALUE_OPTIONS or name in ("-e", "--editable"):
            value = inline if eq else (tokens[index + 1] if index + 1 < len(tokens) else "")
            index += 1 if eq else 2
            if name in _LOCATION_OPTIONS:
                yield name, value
            elif name in ("-e", "--editable"):
                yield "", value
            continue
        if not token.startswith("-"):
            yield "", token
        index += 1


def check_requirements(path: Path, text: str) -> Iterator[Problem]:
    for number, line in _logical_lines(text):
        content = _strip_comment(line).strip()
        if not content:
            continue
        if _FILE_URL.search(content):
            yield Problem(path, number, line, "file URL")
            continue
        if content.startswith("-"):
            tokens = shlex.split(content)
            for option, value in _pip_arguments(tokens):
                if option and not _REMOTE.match(value):
                    yield Problem(path, number, line, f"{option} names a local folder")
                elif not option and _is_local(value):
                    yield Problem(path, number, line, "install from a local path")
            continue
        requirement = content.split(";", 1)[0].split(" --", 1)[0].strip()
        if _requirement_is_local(requirement):
            yield Problem(path, number, line, "requirement installed from a local path")


def _shell_commands(line: str) -> Iterator[str]:
    yield from (part for part in re.split(r"&&|\|\||;|\|", line) if part.strip())


def check_commands(path: Path, text: str) -> Iterator[Problem]:
    """Makefile and Dockerfile: ``pip install|wheel|download`` arguments and file URLs in any setting."""
    for number, line in _logical_lines(text):
        content = _strip_comment(line)
        if not content.strip():
            continue
        if _FILE_URL.search(content):
            yield Problem(path, number, line, "file URL")
            continue
        setting = _PIP_ENV.search(content)
        if setting and not _REMOTE.match(setting.group(2)):
            yield Problem(path, number, line, f"PIP_{setting.group(1)} names a local folder")
        for command in _shell_commands(content):
            match = _PIP.search(command)
            if not match:
                continue
            try:
                tokens = shlex.split(command[match.end() :])
            except ValueError:
                tokens = command[match.end() :].split()
            for option, value in _pip_arguments(tokens):
                if option and not _REMOTE.match(value.strip("'\"")):
                    yield Problem(path, number, line, f"pip {option} names a local folder")
                elif not option and _is_local(value):
                    yield Problem(path, number, line, f"pip installs from a local path ({value})")


def _find(text: str, needle: str) -> tuple[int, str]:
    """The number and text of the first line holding ``needle``."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number, line
    return 1, needle


def check_pyproject(path: Path, text: str) -> Iterator[Problem]:
    for number, line in enumerate(text.splitlines(), 1):
        if _FILE_URL.search(_strip_comment(line)):
            yield Problem(path, number, line, "file URL")
    data = tomllib.loads(text)
    project = data.get("project", {})
    requirements = [
        *data.get("build-system", {}).get("requires", []),
        *project.get("dependencies", []),
        *(r for group in project.get("optional-dependencies", {}).values() for r in group),
        *(r for group in data.get("dependency-groups", {}).values() for r in group if isinstance(r, str)),
    ]
    for requirement in requirements:
        if not _FILE_URL.search(requirement) and _requirement_is_local(requirement):
            yield Problem(path, *_find(text, requirement), "requirement installed from a local path")
    for tool, settings in data.get("tool", {}).items():
        sources = settings.get("sources", {}) if isinstance(settings, dict) else {}
        for name, source in sources.items():
            entries = source if isinstance(source, list) else [source]
            if any(isinstance(entry, dict) and "path" in entry for entry in entries):
                yield Problem(path, *_find(text, name), f"[tool.{tool}.sources] path")


def check_file(path: Path) -> list[Problem]:
    text = path.read_text(encoding="utf-8")
    name = path.name
    if name == "pyproject.toml":
        return list(check_pyproject(path, text))
    if name in ("Makefile", "Dockerfile") or name.startswith("Dockerfile.") or name.endswith(".mk"):
        return list(check_commands(path, text))
    return list(check_requirements(path, text))


def project_files(root: Path) -> list[Path]:
    """The files this check covers in a checkout."""
    found = [root / name for name in ("pyproject.toml", "Makefile", "Dockerfile") if (root / name).is_file()]
    stack = [root]
    while stack:
        folder = stack.pop()
        for entry in sorted(folder.iterdir()):
            if entry.is_dir() and entry.name not in SKIPPED_DIRS:
                stack.append(entry)
            elif entry.is_file() and REQUIREMENT_FILES.match(entry.name):
                found.append(entry)
    return found


def main(argv: list[str]) -> int:
    files = [Path(a) for a in argv] or project_files(ROOT)
    problems = [problem for path in files for problem in check_file(path)]
    for problem in problems:
        sys.stderr.write(f"{problem}\n")
    if problems:
        sys.stderr.write(
            f"{len(problems)} install(s) from a local path or file URL: pin the package from the public "
            "index instead (a path that exists on one machine is a broken install everywhere else)\n"
        )
        return 1
    sys.stdout.write(f"installs come from the public index ({len(files)} files checked)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
