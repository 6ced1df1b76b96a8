"""Where the pipeline's time goes: each stage alone, warm, in one JVM, on the same files.

    python bench/stages.py --data bench/out/events-1000000-files-100 [--rounds 2]

Runs the pipeline's own transforms as batch jobs over the files ``bench/pipeline.py`` simulated (the
streaming state stores are left out: ``deduplicate`` is a plain ``dropDuplicates`` in batch mode), each to
Spark's ``noop`` sink unless it writes, and prints the best wall time of each:

* ``read.json(schema)``: the bare JSON parse, for scale;
* ``parse``: ``parse_events`` (validation);
* ``ingest``: ``validated_records`` (validation + arrival-time dedup), written as Parquet (the records);
* ``event log``: the records' valid events and quarantine written to the lake layout;
* ``engagement``: the records' valid events (one per event id already) -> content join -> windows -> rates.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyspark.sql import DataFrame  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from streaming.config import SparkConfig  # noqa: E402
from streaming.parse import parse_events, valid_events  # noqa: E402
from streaming.schema import EVENT_SCHEMA, RECORD_SCHEMA  # noqa: E402
from streaming.session import build_session  # noqa: E402
from streaming.sources.content_dim import read_content_dimension  # noqa: E402
from streaming.transforms import (  # noqa: E402
    engagement_from_events,
    event_log_rows,
    quarantine_rows,
    validated_records,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder bench/pipeline.py simulated")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per stage (best is kept)")
    args = parser.parse_args()

    from streaming.config import load_config

    spark = build_session(SparkConfig(master="local[2]", shuffle_partitions=4))
    cfg = load_config(
        overrides=[f"dimensions.content_path={args.data / 'dimensions' / 'content.csv'}"], environ={}
    )
    incoming = str(args.data / "incoming")
    work = Path(tempfile.mkdtemp(prefix="mediapulse-stages-"))
    records_path = str(work / "records")
    raw = spark.read.option("recursiveFileLookup", "true").text(incoming).select(
        "value", F.lit("f").alias("source"), F.current_timestamp().alias("ingest_time")
    )
    content = read_content_dimension(spark, cfg.dimensions)
    skew, hour = timedelta(hours=1), timedelta(hours=1)

    def noop(frame: DataFrame) -> None:
        frame.write.format("noop").mode("overwrite").save()

    def ingest() -> None:
        validated_records(raw, skew, hour).write.mode("overwrite").parquet(records_path)

    def records() -> DataFrame:
        return spark.read.schema(RECORD_SCHEMA).parquet(records_path)

    def event_log() -> None:
        batch = records().persist()
        try:
            event_log_rows(batch).write.mode("overwrite").partitionBy("event_date", "event_hour").parquet(
                str(work / "events")
            )
            quarantine_rows(batch).write.mode("overwrite").partitionBy("ingest_date").parquet(
                str(work / "quarantine")
            )
        finally:
            batch.unpersist()

    def engagement() -> None:
        noop(engagement_from_events(valid_events(records()), content, timedelta(minutes=10),
                                    timedelta(minutes=5), 14))  # fmt: skip

    stages = {
        "read.json(schema)": lambda: noop(
            spark.read.schema(EVENT_SCHEMA).option("recursiveFileLookup", "true").json(incoming)
        ),
        "parse": lambda: noop(parse_events(raw, skew)),
        "ingest (parse + dedup + write records)": ingest,
        "event log (records -> lake events + quarantine)": event_log,
        "engagement (records -> join, windows)": engagement,
    }
    try:
        for name, job in stages.items():
            job()  # warm-up
            best = float("inf")
            for _ in range(args.rounds):
                start = time.perf_counter()
                job()
                best = min(best, time.perf_counter() - start)
            print(f"{name:50s} {best:7.2f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
