"""Build the app's wheel, pin its dependencies, and upload one versioned release to the artifacts prefix.

A release is ``<emr.artifacts>/<version>/`` holding the wheel, ``constraints.txt``, ``install.sh`` (the
bootstrap action), ``emr_entry.py`` (the step's driver script) and the config file. Every object is
written with SSE-KMS under the configured key.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bootstrap.aws import Clients
from bootstrap.cluster import CONSTRAINTS, ENTRY_SCRIPT, INSTALL_SCRIPT, Release, s3_split, wheel_filename
from bootstrap.settings import emr_settings

if TYPE_CHECKING:
    from streaming.config import AppConfig

HERE = Path(__file__).resolve().parent
# EMR's Spark brings pyspark (and py4j) on the nodes' PYTHONPATH; a pip copy would shadow or clash with it.
PROVIDED_BY_EMR = frozenset({"pyspark"})


class PackagingError(RuntimeError):
    """The wheel could not be built, pinned or uploaded."""


def project_root() -> Path:
    root = HERE.parent
    if not (root / "pyproject.toml").is_file():
        raise PackagingError(f"`emr package` runs from a source checkout; no pyproject.toml in {root}")
    return root


def project_metadata(root: Path) -> tuple[str, list[str]]:
    """The project's version and runtime dependencies, from ``pyproject.toml``."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    return str(project["version"]), list(project.get("dependencies", []))


def app_version() -> str:
    """The version a release is filed under: the checkout's, else the installed distribution's."""
    root = HERE.parent
    if (root / "pyproject.toml").is_file():
        return project_metadata(root)[0]
    return importlib.metadata.version("mediapulse")


def build_wheel(root: Path, out_dir: Path) -> Path:
    """``pip wheel --no-deps`` the project; offline when the build backend is already installed."""
    version, _ = project_metadata(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q"]
    if importlib.util.find_spec("hatchling") is not None:
        command.append("--no-build-isolation")
    command += [str(root), "-w", str(out_dir)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheel = out_dir / wheel_filename(version)
    if done.returncode != 0 or not wheel.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise PackagingError(f"building the wheel failed ({' '.join(command)}): {' | '.join(tail)}")
    return wheel


@dataclass(frozen=True)
class Pins:
    lines: tuple[str, ...]
    warnings: tuple[str, ...] = ()


def pinned_requirements(dependencies: Iterable[str], exclude: Iterable[str] = PROVIDED_BY_EMR) -> Pins:
    """Pin the runtime dependency closure to the versions installed here (``name==version`` lines).

    Walks ``Requires-Dist`` of the installed distributions, honouring markers and requested extras.
    A dependency missing here is an error; an installed version outside the project's range a warning.
    """
    skip = {canonicalize_name(name) for name in exclude}
    pins: dict[str, str] = {}
    warnings: list[str] = []
    queue: list[tuple[Requirement, str]] = [(Requirement(dep), "pyproject.toml") for dep in dependencies]
    seen_extras: dict[str, set[str]] = {}
    while queue:
        req, wanted_by = queue.pop(0)
        name = canonicalize_name(req.name)
        if name in skip:
            continue
        extras = set(req.extras)
        if name in seen_extras and extras <= seen_extras[name]:
            continue
        seen_extras[name] = seen_extras.get(name, set()) | extras
        try:
            dist = importlib.metadata.distribution(req.name)
        except importlib.metadata.PackageNotFoundError as e:
            raise PackagingError(
                f"{req.name} (needed by {wanted_by}) is not installed here; cannot pin it"
            ) from e
        version = dist.version
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            warnings.append(f"{req.name} {version} is installed but {wanted_by} asks for {req}")
        pins[name] = version
        for line in dist.requires or []:
            child = Requirement(line)
            if child.marker is not None and not any(
                _marker_holds(child, extra) for extra in ({""} | seen_extras[name])
            ):
                continue
            queue.append((child, f"{req.name} {version}"))
    return Pins(tuple(f"{name}=={pins[name]}" for name in sorted(pins)), tuple(warnings))


def _marker_holds(req: Requirement, extra: str) -> bool:
    try:
        return bool(req.marker and req.marker.evaluate({"extra": extra}))
    except UndefinedEnvironmentName:
        return False


def write_constraints(path: Path, pins: Pins, version: str) -> Path:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    header = [
        f"# mediapulse {version}: runtime dependencies pinned from a Python {python} build environment.",
        "# pyspark and py4j are omitted: EMR's Spark provides them on the nodes.",
        "# bootstrap/install.sh installs these (pip install -r) before the wheel (pip install --no-deps).",
    ]
    path.write_text("\n".join([*header, *pins.lines]) + "\n")
    return path


@dataclass(frozen=True)
class PackageResult:
    version: str
    release: Release
    files: dict[str, Path]
    uploaded: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())


def upload_release(s3: Any, release: Release, files: dict[str, Path], kms_key_arn: str) -> tuple[str, ...]:
    """Upload each file to ``<release>/<name>`` with SSE-KMS under the configured key."""
    uploaded = []
    for name, path in files.items():
        uri = release.uri(name)
        bucket, key = s3_split(uri)
        s3.upload_file(
            str(path), bucket, key, ExtraArgs={"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_arn}
        )
        uploaded.append(uri)
    return tuple(uploaded)


def package(
    cfg: AppConfig,
    config_path: str | Path,
    *,
    dist_dir: str | Path | None = None,
    wheel: str | Path | None = None,
    upload: bool = True,
    clients: Clients | None = None,
    out: TextIO | None = None,
) -> PackageResult:
    """Build (or take) the wheel, pin dependencies, and upload the release with SSE-KMS."""
    out = out or sys.stdout
    emr = emr_settings(cfg.emr)
    root = project_root()
    version, dependencies = project_metadata(root)
    folder = Path(dist_dir) if dist_dir else root / "dist" / version
    folder.mkdir(parents=True, exist_ok=True)
    built = Path(wheel) if wheel else build_wheel(root, folder)
    if built.name != wheel_filename(version):
        raise PackagingError(
            f"{built.name} is not the wheel of version {version} ({wheel_filename(version)})"
        )
    pins = pinned_requirements(dependencies)
    config_file = Path(config_path)
    release = Release(artifacts=emr.artifacts, version=version, config_name=config_file.name)
    files = {
        built.name: built,
        CONSTRAINTS: write_constraints(folder / CONSTRAINTS, pins, version),
        INSTALL_SCRIPT: HERE / INSTALL_SCRIPT,
        ENTRY_SCRIPT: HERE / ENTRY_SCRIPT,
        config_file.name: config_file,
    }
    for warning in pins.warnings:
        out.write(f"warning: {warning}\n")
    out.write(f"mediapulse {version}: {built} and {len(pins.lines)} pinned dependencies\n")
    uploaded: tuple[str, ...] = ()
    if upload:
        s3 = (clients or Clients(emr.region))("s3")
        uploaded = upload_release(s3, release, files, emr.kms_key_arn)
        for uri in uploaded:
            out.write(f"uploaded {uri} (SSE-KMS)\n")
    out.write(f"release {release.prefix}\n")
    return PackageResult(version, release, files, uploaded, pins.warnings)
