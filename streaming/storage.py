"""Paths through Hadoop's file systems: the same storage Spark itself uses (local, s3://, s3a://, HDFS)."""

from __future__ import annotations

from collections.abc import Iterable
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


def read_text(spark: SparkSession, path: str) -> str | None:
    """The text of a small file, or None when it does not exist."""
    resolved, fs = hadoop_path(spark, path)
    if not fs.exists(resolved):
        return None
    stream = fs.open(resolved)
    try:
        jvm = spark._jvm
        return str(jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
    finally:
        stream.close()


def write_text(spark: SparkSession, path: str, text: str) -> None:
    """Write a small file (replacing it)."""
    resolved, fs = hadoop_path(spark, path)
    stream = fs.create(resolved, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()


def parquet_options(plain_columns: Iterable[str]) -> dict[str, str]:
    """Parquet writer options that write ``plain_columns`` without a dictionary.

    Building a dictionary for a column of distinct values (event ids, user ids, instants) costs hashing
    and comparing every value until the dictionary overflows: measured, a third to a half of the time
    Spark took to write 1 M records (bench/parquet_write.py). Other columns keep dictionary encoding.
    """
    return {f"parquet.enable.dictionary#{column}": "false" for column in plain_columns}
