"""Build the app's wheel, pin its dependencies, and upload one versioned release to the artifacts prefix.

A release is ``<emr.artifacts>/<version>/`` holding the wheel, the record validator's jar (also inside
the wheel; ``spark-submit --jars`` takes it from here), ``constraints.txt``, ``wheelhouse.tar``
(every pinned dependency as a wheel built for the nodes' platform), ``install.sh`` (the bootstrap
action), ``emr_entry.py`` (the step's driver script) and the config file. Every object is written with
SSE-KMS under the configured key. The nodes install from the wheelhouse only: no package index is
reached at bootstrap, and no source distribution is ever built on a node.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from bootstrap.advisories import pins_below_fixes
from bootstrap.aws import Clients
from bootstrap.cluster import (
    CONSTRAINTS,
    ENTRY_SCRIPT,
    INSTALL_SCRIPT,
    VALIDATOR_JAR,
    WHEELHOUSE,
    Release,
    s3_split,
    wheel_filename,
)
from bootstrap.settings import EmrConfig, emr_settings
from streaming import validator_jar

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
    """``pip wheel --no-deps`` the project, with the record validator's jar built first; offline when the
    build backend is already installed."""
    version, _ = project_metadata(root)
    try:
        validator_jar.ensure_built()
    except validator_jar.ValidatorJarError as error:
        raise PackagingError(str(error)) from error
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


def validator_jar_of(wheel: Path, out_dir: Path) -> Path:
    """The record validator's jar inside ``wheel``, copied to ``out_dir`` (the release ships both)."""
    member = f"streaming/java/{VALIDATOR_JAR}"
    with zipfile.ZipFile(wheel) as archive:
        if member not in archive.namelist():
            raise PackagingError(
                f"{wheel.name} has no {member}: build the wheel from a checkout after `make install` "
                "(or let `emr package` build it)"
            )
        jar = out_dir / VALIDATOR_JAR
        jar.write_bytes(archive.read(member))
    return jar


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


def refuse_known_vulnerabilities(pins: Pins) -> None:
    """No release ships a pin older than a known fix (:mod:`bootstrap.advisories`)."""
    problems = pins_below_fixes(pins.lines)
    if problems:
        raise PackagingError(
            "pinned dependencies below a known security fix: "
            + "; ".join(problems)
            + ". Upgrade them in the build environment (constraints.txt) and package again"
        )


@dataclass(frozen=True)
class Platform:
    """What the nodes run: CPU architecture, CPython version, glibc. The wheelhouse is built for it."""

    architecture: str  # x86_64 | aarch64, as `uname -m` says
    python_version: str  # major.minor.micro, the oldest the nodes run
    glibc: str  # major.minor

    TARGET_FILE = "TARGET"
    OLDEST_GLIBC = 17  # manylinux2014

    @classmethod
    def of(cls, emr: EmrConfig) -> Platform:
        wheelhouse = emr.wheelhouse
        return cls(emr.architecture, wheelhouse.python_version, wheelhouse.glibc)

    def __str__(self) -> str:
        return f"{self.architecture}, CPython {self.python_version}, glibc {self.glibc}"

    @property
    def abi(self) -> str:
        major, minor = self.python_version.split(".")[:2]
        return f"cp{major}{minor}"

    def pip_platforms(self) -> list[str]:
        """pip's ``--platform`` tags, newest glibc first. pip does not widen ``manylinux_2_N`` to older
        glibc releases, so every one down to manylinux2014 (glibc 2.17) is listed."""
        newest = int(self.glibc.split(".")[1])
        minors = range(newest, self.OLDEST_GLIBC - 1, -1)
        return [
            *(f"manylinux_2_{m}_{self.architecture}" for m in minors),
            f"manylinux2014_{self.architecture}",
        ]

    def target_text(self) -> str:
        """The ``TARGET`` file install.sh reads before installing (``key=value`` lines)."""
        return f"architecture={self.architecture}\npython={self.python_version}\nglibc={self.glibc}\n"

    @classmethod
    def from_target_text(cls, text: str) -> Platform:
        values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        return cls(values["architecture"], values["python"], values["glibc"])


def build_wheelhouse(
    constraints: Path, out_dir: Path, platform: Platform, index_args: Sequence[str] = ()
) -> Path:
    """``pip download`` every pin of ``constraints`` as a wheel for ``platform``, into ``wheelhouse.tar``.

    Binary wheels only (``--only-binary=:all:``), for CPython ``platform.python_version`` and the
    manylinux tags the nodes' glibc accepts; pure-Python wheels match any platform. ``index_args`` are
    extra pip options (``--index-url``...); pip's own configuration and ``PIP_*`` variables apply too.
    """
    folder = out_dir / "wheelhouse"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    command = [
        sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q",
        "--no-deps", "--only-binary=:all:", "--implementation", "cp",
        "--python-version", platform.python_version,
        "--abi", platform.abi, "--abi", "abi3", "--abi", "none",
    ]  # fmt: skip
    for tag in platform.pip_platforms():
        command += ["--platform", tag]
    command += ["-r", str(constraints), "-d", str(folder), *index_args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
        raise PackagingError(
            f"no wheel for {platform}: {' | '.join(errors[-3:]) or done.stderr.strip()[-500:]}"
        )
    (folder / Platform.TARGET_FILE).write_text(platform.target_text())
    tar_path = out_dir / WHEELHOUSE
    with tarfile.open(tar_path, "w") as tar:  # wheels are zip files already: no compression
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=f"wheelhouse/{path.name}")
    return tar_path


def check_wheelhouse(tar_path: Path, pins: Pins, platform: Platform) -> None:
    """The wheelhouse holds one wheel for every pin, and was built for ``platform``."""
    try:
        with tarfile.open(tar_path) as tar:
            names = {Path(member.name).name: member for member in tar.getmembers() if member.isfile()}
            target = tar.extractfile(names[Platform.TARGET_FILE]) if Platform.TARGET_FILE in names else None
            built_for = Platform.from_target_text(target.read().decode()) if target else None
    except (tarfile.TarError, OSError, KeyError) as e:
        raise PackagingError(f"{tar_path} is not a wheelhouse: {e}") from e
    if built_for != platform:
        raise PackagingError(
            f"{tar_path} was built for {built_for or 'no platform'}; the nodes run {platform}"
        )
    wheels = set()
    for name in names:
        if name.endswith(".whl"):
            try:
                dist, version, _, _ = parse_wheel_filename(name)
            except InvalidWheelFilename as e:
                raise PackagingError(f"{tar_path}: {e}") from e
            wheels.add(f"{dist}=={version}")
    wanted = {f"{canonicalize_name(n)}=={v}" for n, v in (line.split("==", 1) for line in pins.lines)}
    missing = sorted(wanted - wheels)
    if missing:
        raise PackagingError(f"{tar_path} has no wheel for {', '.join(missing)}")


def write_constraints(path: Path, pins: Pins, version: str) -> Path:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    header = [
        f"# mediapulse {version}: runtime dependencies pinned from a Python {python} build environment.",
        "# pyspark and py4j are omitted: EMR's Spark provides them on the nodes.",
        "# bootstrap/install.sh installs these from wheelhouse.tar (pip install --no-index -r) into the",
        "# app's virtualenv, then the wheel (pip install --no-deps).",
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
    wheelhouse: str | Path | None = None,
    index_args: Sequence[str] = (),
    upload: bool = True,
    clients: Clients | None = None,
    out: TextIO | None = None,
) -> PackageResult:
    """Build (or take) the wheel, pin dependencies, download (or take) their wheels for the nodes'
    platform, and upload the release with SSE-KMS. A pin below a known security fix stops it."""
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
    refuse_known_vulnerabilities(pins)
    config_file = Path(config_path)
    release = Release(artifacts=emr.artifacts, version=version, config_name=config_file.name)
    constraints = write_constraints(folder / CONSTRAINTS, pins, version)
    platform = Platform.of(emr)
    if wheelhouse is None:
        out.write(f"downloading {len(pins.lines)} wheels for {platform}\n")
        wheelhouse = build_wheelhouse(constraints, folder, platform, index_args)
    wheelhouse = Path(wheelhouse)
    check_wheelhouse(wheelhouse, pins, platform)
    files = {
        built.name: built,
        VALIDATOR_JAR: validator_jar_of(built, folder),
        CONSTRAINTS: constraints,
        WHEELHOUSE: wheelhouse,
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
