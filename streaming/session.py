"""The one SparkSession of a mediapulse process, built at the entry point."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from pyspark import SparkContext
from pyspark.sql import SparkSession

from streaming import validator_jar
from streaming.config import SparkConfig

LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
MALLOC_ARENA_MAX = "2"

log = logging.getLogger(__name__)


def build_session(cfg: SparkConfig, app_name: str = "mediapulse") -> SparkSession:
    """Build the session with settings a stateful stream needs; quiet Spark's own logging."""
    # Python workers must use this interpreter (it has pyarrow and the app installed).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if cfg.master and cfg.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # glibc gives threads that allocate outside the Java heap (RocksDB, Parquet, compression) malloc arenas
    # of their own, up to 8 per core, and returns little of them: 5 M events cold, the JVM's peak was
    # 2,168 MiB with the default and 1,920 MiB with 2 arenas (273 and 287 s, one run each). Read when the
    # JVM starts (this process's, or YARN's executors through spark.executorEnv below).
    os.environ.setdefault("MALLOC_ARENA_MAX", MALLOC_ARENA_MAX)
    builder = SparkSession.builder.appName(app_name)
    if cfg.master:
        builder = builder.master(cfg.master)
    settings = {
        "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.streaming.stateStore.providerClass":
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        # Counting state rows costs a lookup per write (measured: the event-id dedup state of 1 M records
        # took 7.3 s instead of 12.3 s without it); the state's size is still reported in bytes.
        "spark.sql.streaming.stateStore.rocksdb.trackTotalNumberOfRows": "false",
        "spark.sql.streaming.noDataMicroBatches.enabled": "true",
        # Spark keeps the code it compiled for a query's stages in a cache of 100 entries by default; the
        # four queries need more, so every micro-batch compiled identical code again and the JVM had new
        # classes to optimise each time: 75 compilations every 8 s with the default, 16 with 1000.
        # Long-running at 2,000 records/s: 201 -> 181 CPU s, freshness p95 ~21 -> 15 s.
        "spark.sql.codegen.cache.maxEntries": "1000",
        "spark.speculation": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG}",
        "spark.executorEnv.MALLOC_ARENA_MAX": MALLOC_ARENA_MAX,
    }
    if cfg.state_store_memory_mb is not None:
        # Each RocksDB instance (one per state partition of each stateful query) otherwise keeps its own
        # write buffers: measured on 1 M events, peak memory 3.9 GB unbounded, 2.5 GB at 256 MB, same time.
        settings["spark.sql.streaming.stateStore.rocksdb.boundedMemoryUsage"] = "true"
        settings["spark.sql.streaming.stateStore.rocksdb.maxMemoryUsageMB"] = str(cfg.state_store_memory_mb)
    if cfg.master and cfg.master.startswith("local"):
        settings["spark.ui.enabled"] = "false"
    settings.update(cfg.conf)
    if SparkContext._gateway is None and "PYSPARK_GATEWAY_PORT" not in os.environ:
        # This process starts Spark's JVM: the record validator joins its classpath here. Under
        # spark-submit (EMR) the JVM runs already and the step passes the jar with --jars.
        try:
            jar = str(validator_jar.ensure_built())
        except validator_jar.ValidatorJarError as error:
            # Commands that read no records (top, report, ...) run without it; parsing stops with the error.
            log.warning("%s", error)
        else:
            jars = [j for j in settings.get("spark.jars", "").split(",") if j]
            settings["spark.jars"] = ",".join([*jars, jar])
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.log_level)
    return spark
