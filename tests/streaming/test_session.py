from __future__ import annotations

from pyspark.sql import SparkSession

from streaming.jvm import JIT_OPTIONS


def test_the_jvm_keeps_its_compiled_code_between_micro_batches(spark: SparkSession):
    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    arguments = list(runtime.getInputArguments())
    assert "-XX:-UseCodeCacheFlushing" in arguments
    assert set(JIT_OPTIONS) <= set(arguments)
