"""The one SparkSession: what the JVM it starts runs with."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from streaming.session import MALLOC_ARENA_MAX


def test_the_jvm_and_the_executors_run_with_few_malloc_arenas(spark: SparkSession) -> None:
    pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")

    assert f"MALLOC_ARENA_MAX={MALLOC_ARENA_MAX}".encode() in environment
    assert spark.sparkContext.getConf().get("spark.executorEnv.MALLOC_ARENA_MAX") == MALLOC_ARENA_MAX
