"""The record validator's jar: stage 2's JVM part (``streaming/java``), built from source with ``javac``.

The validator parses and checks each record inside Spark's JVM, with the Jackson parser Spark bundles,
so a record costs about what Spark's own JSON reader spends on it (see :mod:`streaming.parse`). It is
compiled against the installed PySpark's jars and shipped inside the wheel:

* ``make install`` (and ``python -m streaming.validator_jar``) builds it in the source tree;
* ``mediapulse emr package`` builds it before the wheel, uploads it with the release and passes it to
  ``spark-submit --jars``;
* a session this process starts itself (local runs, tests) puts it on Spark's classpath.

Building needs a JDK (``javac``); running needs only the jar.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().with_name("java")
JAR = SOURCE_DIR / "mediapulse-validator.jar"
CLASS_NAME = "mediapulse.RecordValidator"
# The jar's entries carry this timestamp (zip's earliest), so the same classes make the same jar.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class ValidatorJarError(RuntimeError):
    """The validator's jar is missing and cannot be built here."""


def sources() -> list[Path]:
    return sorted(SOURCE_DIR.rglob("*.java"))


def is_current(jar: Path | None = None) -> bool:
    """Whether ``jar`` (:data:`JAR`) exists and is newer than every source file (a wheel ships no
    sources: current)."""
    jar = jar or JAR
    if not jar.is_file():
        return False
    built = jar.stat().st_mtime
    return all(source.stat().st_mtime <= built for source in sources())


def _javac() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidates = [str(Path(java_home) / "bin" / "javac")] if java_home else []
    candidates.append(shutil.which("javac") or "")
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise ValidatorJarError(
        "javac not found: building the record validator needs a Java 17 JDK "
        "(Debian: apt-get install openjdk-17-jdk-headless; or set JAVA_HOME)"
    )


def _spark_jars() -> Path:
    import pyspark

    jars = Path(pyspark.__file__).resolve().parent / "jars"
    if not jars.is_dir():
        raise ValidatorJarError(f"no Spark jars at {jars}: install pyspark to build the record validator")
    return jars


def build(jar: Path | None = None) -> Path:
    """Compile the validator against the installed Spark and write ``jar`` (:data:`JAR`); its path."""
    jar = jar or JAR
    if not sources():
        raise ValidatorJarError(f"no validator sources under {SOURCE_DIR} (a wheel holds only the jar)")
    with tempfile.TemporaryDirectory(prefix="mediapulse-validator-") as tmp:
        classes = Path(tmp) / "classes"
        command = [
            _javac(), "--release", "17", "-nowarn", "-Xlint:-path", "-encoding", "UTF-8",
            "-cp", str(_spark_jars() / "*"), "-d", str(classes), *map(str, sources()),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ValidatorJarError(f"javac failed to build the record validator:\n{result.stderr.strip()}")
        jar.parent.mkdir(parents=True, exist_ok=True)
        staged = jar.with_name(f".{jar.name}.{os.getpid()}")  # beside the jar: the rename is atomic
        with zipfile.ZipFile(staged, "w", zipfile.ZIP_DEFLATED) as archive:
            manifest = zipfile.ZipInfo("META-INF/MANIFEST.MF", _ZIP_TIME)
            archive.writestr(manifest, "Manifest-Version: 1.0\r\n\r\n")
            for path in sorted(classes.rglob("*.class")):
                entry = zipfile.ZipInfo(path.relative_to(classes).as_posix(), _ZIP_TIME)
                archive.writestr(entry, path.read_bytes())
        os.replace(staged, jar)  # whole or not at all, also with another process building at once
    return jar


def ensure_built(jar: Path | None = None) -> Path:
    """The jar (:data:`JAR`), built first when a source checkout's sources are newer (or it is missing)."""
    jar = jar or JAR
    if is_current(jar):
        return jar
    if not sources():
        raise ValidatorJarError(
            f"the record validator's jar {jar} is missing from this installation: reinstall mediapulse "
            "from a wheel built by `mediapulse emr package` or `pip wheel` after `make install`"
        )
    return build(jar)


def main() -> int:
    try:
        print(build())
    except ValidatorJarError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
