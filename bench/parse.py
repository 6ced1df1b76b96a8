"""Validation against a bare JSON parse, warm, in one JVM.

    python bench/parse.py --events 1000000 [--files 100] [--rounds 3] [--workdir bench/out]

Simulates N events once (the same traffic and layout as ``bench/pipeline.py``: 2 % client retries,
1 % malformed, half the files gzipped), then times these jobs on the same files, each written to Spark's
``noop`` sink:

* ``read.json(schema)``: Spark's JSON reader with the contract's 13 fields (no checks);
* ``from_json``: the text source's records parsed with ``from_json`` into the same schema;
* ``parse_events``: the validation (typed columns, reasons);
* ``parse_events -> valid_events``: the validation followed by the valid-row filter, with no barrier
  between them.

Every job runs once to warm up; then the jobs take turns for ``--rounds`` rounds (so a change in the
machine's load hits all of them). The best wall time and the best CPU time of the driver JVM are reported,
with the ratio to ``read.json``; CPU time is the steadier figure on a shared machine.

To measure another version of the validation with the same harness and data, put its tree first on the
path: ``git archive <commit> | tar -x -C /tmp/before`` then ``PYTHONPATH=/tmp/before python
bench/parse.py ...`` (the module measured is printed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # after PYTHONPATH, which may name another tree to measure


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument(
        "--skip-valid",
        action="store_true",
        help="leave out parse_events -> valid_events (slow before 7a461c3)",
    )
    args = parser.parse_args()

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import DataFrame
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    import streaming.parse
    from devtools.simulate import SimulationSpec, simulate, write_files
    from streaming.config import SparkConfig
    from streaming.parse import parse_events, valid_events
    from streaming.schema import EVENT_FIELDS
    from streaming.session import build_session

    incoming = args.workdir / f"parse-input-{args.events}-files-{args.files}"
    if not incoming.exists():
        started = time.perf_counter()
        spec = SimulationSpec(events=args.events, files=args.files, contents=5000, users=200_000, seed=42)
        traffic = simulate(spec)
        write_files(traffic, incoming, spec)
        print(f"generated {len(traffic.lines):,} lines in {time.perf_counter() - started:.0f} s")

    spark = build_session(SparkConfig(master="local[2]", shuffle_partitions=4), app_name="bench-parse")
    jvm_pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    ticks = os.sysconf("SC_CLK_TCK")

    def jvm_cpu_seconds() -> float:
        fields = Path(f"/proc/{jvm_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    # The contract's fields with their natural JSON types, as a bare parse would read them.
    json_types = {"watch_ms": T.LongType(), "integer": T.LongType()}
    schema = T.StructType(
        [T.StructField(f.name, json_types.get(f.kind, T.StringType())) for f in EVENT_FIELDS]
    )
    path = str(incoming)

    def raw() -> DataFrame:
        lines = spark.read.format("text").option("recursiveFileLookup", "true").load(path)
        return lines.select(
            "value", F.col("_metadata.file_path").alias("source"), F.current_timestamp().alias("ingest_time")
        )

    skew = timedelta(hours=1)
    jobs: dict[str, Callable[[], DataFrame]] = {
        "read.json(schema)": lambda: (
            spark.read.schema(schema).option("recursiveFileLookup", "true").json(path)
        ),
        "from_json(value, schema)": lambda: raw().select(F.from_json("value", schema).alias("event")),
        "parse_events": lambda: parse_events(raw(), skew),
        "parse_events -> valid_events": lambda: parse_events(raw(), skew).transform(valid_events),
    }
    if args.skip_valid:
        del jobs["parse_events -> valid_events"]
    records = raw().count()

    def run(make: Callable[[], DataFrame]) -> tuple[float, float]:
        frame = make()
        cpu, start = jvm_cpu_seconds(), time.perf_counter()
        frame.write.format("noop").mode("overwrite").save()
        return time.perf_counter() - start, jvm_cpu_seconds() - cpu

    for make in jobs.values():
        run(make)  # warm-up: code generation, JIT, file listing
    best: dict[str, tuple[float, float]] = {name: (float("inf"), float("inf")) for name in jobs}
    for _ in range(args.rounds):
        for name, make in jobs.items():
            wall, cpu = run(make)
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    spark.stop()

    base_wall, base_cpu = best["read.json(schema)"]
    print(f"\n{records:,} records, {args.files} files, local[2], best of {args.rounds} warm rounds")
    print(f"validation measured: {streaming.parse.__file__}")
    print(f"{'job':32} {'wall s':>7} {'vs read.json':>12} {'JVM CPU s':>10} {'vs read.json':>12}")
    for name, (wall, cpu) in best.items():
        print(f"{name:32} {wall:7.2f} {wall / base_wall:12.2f} {cpu:10.2f} {cpu / base_cpu:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
