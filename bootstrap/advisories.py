"""Known vulnerabilities fixed in releases of packages mediapulse ships or tests with: no pin may be older.

A floor per package, each the first release that fixes the advisories named beside it. ``emr package``
refuses to build a release whose pinned closure has a package below its floor, and a test holds the
repository's ``constraints.txt`` to the same floors. This is a list of fixes the project has checked,
not a vulnerability scanner: run ``pip-audit`` (or the index's advisories) before a release as well, and
add a floor here when an advisory touches a pinned package.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from packaging.utils import canonicalize_name
from packaging.version import Version


@dataclass(frozen=True)
class KnownFix:
    package: str
    fixed_in: str
    advisories: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.package}>={self.fixed_in} ({', '.join(self.advisories)})"


KNOWN_FIXES = (
    KnownFix("certifi", "2024.7.4", ("CVE-2024-39689",)),
    KnownFix("cryptography", "50.0.0", ("CVE-2026-69247", "GHSA-g6cj-pr64-35w5")),
    KnownFix("idna", "3.7", ("CVE-2024-3651",)),
    KnownFix("jinja2", "3.1.6", ("CVE-2025-27516", "GHSA-cpwx-vrp4-4pq7")),
    KnownFix("protobuf", "6.33.5", ("CVE-2026-0994", "GHSA-7gcm-g887-7qv7")),
    KnownFix("pyarrow", "23.0.1", ("CVE-2026-25087", "GHSA-rgxp-2hwp-jwgg")),
    KnownFix("requests", "2.33.0", ("CVE-2026-25645", "GHSA-gc5v-m9x4-r6x2")),
    # redshift-connector imports setuptools at run time, so it ships in the release.
    KnownFix("setuptools", "83.0.0", ("CVE-2026-59890", "GHSA-h35f-9h28-mq5c")),
    KnownFix("urllib3", "2.8.0", ("CVE-2026-97687", "CVE-2026-97688", "CVE-2026-97689")),
    KnownFix("werkzeug", "3.1.6", ("CVE-2026-27199", "GHSA-29vq-49wr-vm6x")),
)
_BY_NAME = {canonicalize_name(fix.package): fix for fix in KNOWN_FIXES}


def pins_below_fixes(pins: Iterable[str]) -> list[str]:
    """``name==version`` pins older than a known fix, each with the floor it misses."""
    problems = []
    for line in pins:
        line = line.split("#", 1)[0].strip()
        if "==" not in line:
            continue
        name, version = (part.strip() for part in line.split("==", 1))
        fix = _BY_NAME.get(canonicalize_name(name))
        if fix is not None and Version(version) < Version(fix.fixed_in):
            problems.append(f"{name}=={version} is below {fix}")
    return problems
