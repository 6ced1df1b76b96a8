"""Properties of the executed plan that keep validation as cheap as a JSON parse.

The plan is walked node by node and expression by expression through the JVM: the plan's text shortens
long lists ("... 18 more fields"), which could hide a second parse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from streaming.config import FilesSourceConfig
from streaming.parse import VALIDATOR_FUNCTION, parse_events, quarantined, valid_events
from streaming.schema import RAW_SCHEMA
from streaming.sources.files import read_files
from streaming.transforms import validated_records

# HotSpot does not JIT-compile a method of more bytecode than this (-XX:HugeMethodLimit); Spark's
# generated code then runs in the interpreter, several times slower.
JIT_METHOD_LIMIT = 8000

RECORD = (
    '{"event_id":"e1","event_type":"progress","event_time":"2026-11-01T10:00:00Z","content_id":"c1",'
    '"affiliate_id":"a1","platform":"web","user_id":"u1","watch_ms":5}'
)

# What callers do with the parsed records.
PATHS: dict[str, Callable[[DataFrame], DataFrame]] = {
    "parsed": lambda parsed: parsed,
    "valid": valid_events,
    "quarantined": quarantined,
    "filtered on reasons": lambda parsed: parsed.filter(F.size("reasons") > 0),
}


def parsed(spark: SparkSession) -> DataFrame:
    raw = spark.createDataFrame([(RECORD, "file:///in/x.json", datetime(2026, 11, 2))], RAW_SCHEMA)
    return parse_events(raw, timedelta(hours=1))


def streamed(spark: SparkSession, folder: Path) -> DataFrame:
    """The valid events of a stream of files, deduplicated within a watermark as the pipeline does."""
    lines = spark.readStream.format("text").load(str(folder))
    raw = lines.select("value", F.lit("file").alias("source"), F.current_timestamp().alias("ingest_time"))
    return (
        valid_events(parse_events(raw, timedelta(hours=1)))
        .withWatermark("event_time", "10 minutes")
        .dropDuplicatesWithinWatermark(["event_id"])
    )


def _seq(seq: Any) -> Iterator[Any]:
    for i in range(seq.size()):
        yield seq.apply(i)


def _plan_nodes(node: Any) -> Iterator[Any]:
    yield node
    for child in _seq(node.children()):
        yield from _plan_nodes(child)


def _expressions(expression: Any) -> Iterator[Any]:
    yield expression
    for child in _seq(expression.children()):
        yield from _expressions(child)


def _parses_json(expression: Any) -> bool:
    name = expression.getClass().getSimpleName()
    if name == "ScalaUDF":  # the record validator, or another function of the JVM
        udf_name = expression.udfName()
        return bool(udf_name.isDefined() and udf_name.get().startswith(VALIDATOR_FUNCTION))
    if name == "StaticInvoke":  # try_parse_json, once the optimizer has replaced it
        return expression.functionName() == "parseJson"
    return name in {"ParseJson", "JsonToStructs", "JsonTuple", "GetJsonObject", "SchemaOfJson"}


def json_parses(plan: Any) -> int:
    """How many expressions of an executed plan parse JSON text."""
    return sum(
        _parses_json(e)
        for node in _plan_nodes(plan)
        for top in _seq(node.expressions())
        for e in _expressions(top)
    )


def largest_compiled_method(frame: DataFrame) -> int:
    """Bytecode size of the largest method Spark generates for the whole-stage-compiled parts of the plan."""
    compiler = frame.sparkSession._jvm.org.apache.spark.sql.catalyst.expressions.codegen.CodeGenerator
    plan = executed(frame)
    sizes = [
        compiler.compile(node.doCodeGen()._2())._2().maxMethodCodeSize()
        for node in _plan_nodes(plan)
        if node.nodeName().startswith("WholeStageCodegen")
    ]
    assert sizes, "no whole-stage-compiled part in the plan"
    return max(sizes)


def executed(frame: DataFrame) -> Any:
    return frame._jdf.queryExecution().executedPlan()


@pytest.mark.parametrize("path", PATHS)
def test_a_record_is_parsed_once(spark, path):
    assert json_parses(executed(PATHS[path](parsed(spark)))) == 1


def test_a_record_is_parsed_once_in_a_streaming_query_with_deduplication(spark, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "1.json").write_text(RECORD + "\n")
    # The last execution must be the batch with data, not a later one that only moves the watermark.
    no_data_batches = "spark.sql.streaming.noDataMicroBatches.enabled"
    before = spark.conf.get(no_data_batches)
    spark.conf.set(no_data_batches, "false")
    query = (
        streamed(spark, tmp_path / "in")
        .writeStream.format("noop")
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    try:
        query.awaitTermination()
        plan = query._jsq.streamingQuery().lastExecution().executedPlan()
    finally:
        query.stop()
        spark.conf.set(no_data_batches, before)
    assert json_parses(plan) == 1


@pytest.mark.parametrize("path", ["parsed", "valid", "quarantined"])
def test_compiled_methods_stay_small_enough_to_be_jit_compiled(spark, path):
    assert largest_compiled_method(PATHS[path](parsed(spark))) < JIT_METHOD_LIMIT


def _parse_stage_code(query: Any) -> list[str]:
    """The generated code of the whole-stage-compiled parts of the query's last batch that parse JSON."""
    plan = query._jsq.streamingQuery().lastExecution().executedPlan()
    return [
        node.doCodeGen()._2().body()
        for node in _plan_nodes(plan)
        if node.nodeName().startswith("WholeStageCodegen") and any(map(_node_parses_json, _stage_nodes(node)))
    ]


def _stage_nodes(node: Any) -> Iterator[Any]:
    """The nodes compiled into one whole-stage part: down to its inputs, not into the stages below."""
    yield node
    if node.nodeName() != "InputAdapter":
        for child in _seq(node.children()):
            yield from _stage_nodes(child)


def _node_parses_json(node: Any) -> bool:
    return any(_parses_json(e) for top in _seq(node.expressions()) for e in _expressions(top))


def test_the_parse_compiles_to_the_same_code_every_micro_batch(spark, tmp_path):
    """A per-batch constant (the batch's time as each record's arrival, a random seed) in the parse's
    stage would make Spark compile that stage, and the JVM optimise it, again on every micro-batch."""
    folder = tmp_path / "in"
    folder.mkdir()
    raw = read_files(spark, FilesSourceConfig(path=str(folder)))
    records = validated_records(raw, timedelta(hours=1), timedelta(minutes=10))
    code = []
    for batch in range(2):  # two runs of the query: two batches, each with its own batch time
        (folder / f"{batch}.json").write_text(RECORD.replace('"e1"', f'"e{batch}"') + "\n")
        query = (
            records.writeStream.format("noop")
            .option("checkpointLocation", str(tmp_path / "checkpoint"))
            .trigger(availableNow=True)
            .start()
        )
        try:
            query.awaitTermination()
            code.append(_parse_stage_code(query))
        finally:
            query.stop()
    assert len(code[0]) == 1, "expected the parse in one whole-stage-compiled part"
    assert code[0] == code[1]
