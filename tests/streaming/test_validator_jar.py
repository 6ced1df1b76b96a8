"""Building the record validator's jar from its Java source (javac against the installed Spark)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from streaming import validator_jar
from streaming.validator_jar import ValidatorJarError


def test_the_jar_is_built_from_the_sources_and_rebuilt_only_when_they_change(tmp_path: Path):
    jar = validator_jar.build(tmp_path / "validator.jar")
    with zipfile.ZipFile(jar) as archive:
        assert "mediapulse/RecordValidator.class" in archive.namelist()
    assert validator_jar.is_current(jar)
    built = jar.stat().st_mtime_ns
    assert validator_jar.ensure_built(jar) == jar and jar.stat().st_mtime_ns == built
    newest = max(source.stat().st_mtime for source in validator_jar.sources())
    os.utime(jar, (newest - 10, newest - 10))  # older than a source: built again
    assert not validator_jar.is_current(jar)
    validator_jar.ensure_built(jar)
    assert validator_jar.is_current(jar)


def test_without_a_jdk_the_build_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(ValidatorJarError, match=r"javac not found.*openjdk-17-jdk-headless"):
        validator_jar.build(tmp_path / "validator.jar")
    assert not (tmp_path / "validator.jar").exists()


def test_an_installation_without_sources_or_jar_names_the_missing_jar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(validator_jar, "SOURCE_DIR", tmp_path / "java")
    with pytest.raises(ValidatorJarError, match=r"validator\.jar is missing from this installation"):
        validator_jar.ensure_built(tmp_path / "validator.jar")


_WITHOUT_JAR = """
import sys
from datetime import datetime, timedelta
from pathlib import Path

from streaming import validator_jar

validator_jar.SOURCE_DIR = Path(sys.argv[1])  # no sources, no jar: as a wheel installed without it
validator_jar.JAR = Path(sys.argv[1]) / "mediapulse-validator.jar"
from streaming.config import SparkConfig
from streaming.parse import parse_events
from streaming.schema import RAW_SCHEMA
from streaming.session import build_session

spark = build_session(SparkConfig(master="local[1]", shuffle_partitions=1))
print("session rows:", spark.range(3).count())  # what needs no parse still runs
raw = spark.createDataFrame([("{}", "file:///x", datetime(2026, 11, 1))], RAW_SCHEMA)
try:
    parse_events(raw, timedelta(hours=1))
except validator_jar.ValidatorJarError as error:
    print("refused:", error)
spark.stop()
"""


def test_without_the_jar_a_session_runs_but_parsing_stops_with_what_to_do(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_JAR, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "session rows: 3" in done.stdout
    refusal = "refused: the record validator (mediapulse.RecordValidator) is not on Spark's classpath"
    assert refusal in done.stdout
    assert "--jars" in done.stdout and "make install" in done.stdout
    assert "is missing from this installation" in done.stderr  # the session's warning says why
