from __future__ import annotations

import json
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from streaming.query import VIEWERS_SESSION_CONF, session_conf

PARTITIONS = "spark.sql.shuffle.partitions"


def test_a_query_keeps_the_settings_it_started_with_and_the_session_gets_its_own_back(
    spark: SparkSession, tmp_path: Path
) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "a.json").write_text("\n".join(json.dumps({"k": k % 3}) for k in range(10)))
    before = spark.conf.get(PARTITIONS)
    assert before != "3"
    counts = spark.readStream.schema("k int").json(str(source)).groupBy("k").agg(F.count("*").alias("n"))
    writer = (
        counts.writeStream.outputMode("complete")
        .format("memory")
        .queryName("session_conf_probe")
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
    )
    with session_conf(spark, {PARTITIONS: "3"}):
        query = writer.start()
    assert spark.conf.get(PARTITIONS) == before  # restored as soon as the query started
    query.awaitTermination(120)
    try:
        # The aggregation's state was planned with the query's copy of the setting.
        (state,) = query.lastProgress["stateOperators"]
        assert state["numShufflePartitions"] == 3
        counted = sorted(tuple(r) for r in spark.table("session_conf_probe").collect())
        assert counted == [(0, 4), (1, 3), (2, 3)]
    finally:
        query.stop()
        spark.catalog.dropTempView("session_conf_probe")


def test_a_setting_unset_before_is_unset_again(spark: SparkSession) -> None:
    (key,) = VIEWERS_SESSION_CONF
    assert spark.conf.get(key, None) is None
    with session_conf(spark, VIEWERS_SESSION_CONF):
        assert spark.conf.get(key) == VIEWERS_SESSION_CONF[key]
    assert spark.conf.get(key, None) is None
