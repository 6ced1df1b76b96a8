"""Paths through Hadoop's file systems: the same storage Spark itself uses (local, s3://, s3a://, HDFS)."""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession


def hadoop_path(spark: SparkSession, path: str) -> tuple[Any, Any]:
    """A Hadoop ``Path`` and its ``FileSystem``."""
    jvm = spark._jvm
    if jvm is None:
        raise RuntimeError("mediapulse needs a classic (non-Connect) SparkSession")
    resolved = jvm.org.apache.hadoop.fs.Path(path)
    return resolved, resolved.getFileSystem(spark._jsc.hadoopConfiguration())


def path_exists(spark: SparkSession, path: str) -> bool:
    resolved, fs = hadoop_path(spark, path)
    return bool(fs.exists(resolved))
