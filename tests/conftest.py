from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from streaming.config import SparkConfig
from streaming.session import build_session

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """The one Spark session of the test run: local[2], few shuffle partitions, UI off."""
    session = build_session(SparkConfig(master="local[2]", shuffle_partitions=2), app_name="mediapulse-tests")
    yield session
    session.stop()
