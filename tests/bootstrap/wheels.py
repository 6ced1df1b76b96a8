"""Small, valid wheels made on the spot, so pip can download and install them without an index."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from collections.abc import Iterable
from pathlib import Path

from packaging.utils import canonicalize_name


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def make_wheel(folder: Path, name: str, version: str, tag: str = "py3-none-any") -> Path:
    """``<name>-<version>-<tag>.whl`` in ``folder``: one empty module and the dist-info pip reads."""
    dist = canonicalize_name(name).replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}_fake/__init__.py": b"",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: "
            f"{'true' if tag.endswith('none-any') else 'false'}\n"
            + "".join(f"Tag: {tag}\n" for tag in _expand(tag))
        ).encode(),
    }
    record = [_record_line(path, data) for path, data in files.items()] + [f"{info}/RECORD,,"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, data in files.items():
            wheel.writestr(member, data)
        wheel.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


def _expand(tag: str) -> list[str]:
    """``cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64`` -> one tag per platform."""
    python, abi, platforms = tag.split("-")
    return [f"{python}-{abi}-{platform}" for platform in platforms.split(".")]


def wheels_for_pins(folder: Path, pins: Iterable[str]) -> Path:
    """A pure-Python stand-in wheel for every ``name==version`` line: a local index for pip."""
    for line in pins:
        if "==" in line and not line.startswith("#"):
            name, version = line.strip().split("==", 1)
            make_wheel(folder, name, version)
    return folder
