"""Pipeline throughput vs a bare Spark batch job on the same files, in one run.

    python bench/pipeline.py --events 1000000 [--files 100] [--per-trigger 10] [--workdir bench/out]

Generates simulated traffic once, then runs, each in its own JVM (so neither inherits the other's
warm-up or caches):

* ``pipeline``: ``mediapulse run --available-now`` semantics (both queries, all sinks, DuckDB);
* ``bare``: a Spark batch job that only parses the same files with ``spark.read.json`` and an explicit
  schema and aggregates the same windows (no validation, dedup, enrichment, state or sinks).

Prints events/s, per-batch latency (p50/p95), peak resident memory of the process tree, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PIPELINE_JOB = """
import json, sys, time
from streaming.config import load_config
from streaming.run import run_pipeline
from streaming.session import build_session
cfg = load_config(overrides=sys.argv[1:], environ={})
spark = build_session(cfg.spark)
spark.range(1).count()  # JVM warm-up, as the bare job gets
start = time.perf_counter()
reporter = run_pipeline(spark, cfg, available_now=True)
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "durations_ms": reporter.durations,
                  "totals": {k: dict(v) for k, v in reporter.totals.items()}}))
"""

BARE_JOB = """
import json, sys, time
from pyspark.sql import functions as F, types as T
from streaming.config import SparkConfig
from streaming.session import build_session
spark = build_session(SparkConfig(master="local[2]", shuffle_partitions=4))
spark.range(1).count()
schema = T.StructType([T.StructField(n, T.StringType()) for n in
    ("event_id", "event_type", "event_time", "content_id", "affiliate_id", "platform", "user_id")]
    + [T.StructField("watch_ms", T.LongType())])
start = time.perf_counter()
events = (spark.read.schema(schema).option("recursiveFileLookup", "true").json(sys.argv[1])
    .withColumn("ts", F.coalesce(F.try_to_timestamp("event_time"),
                                 F.timestamp_millis(F.expr("try_cast(event_time AS BIGINT)")))))
(events.groupBy(F.window("ts", "5 minutes"), "content_id", "affiliate_id", F.lower("platform"))
    .agg(F.count_if(F.col("event_type") == "impression"), F.count_if(F.col("event_type") == "click"),
         F.count_if(F.col("event_type") == "play_start"), F.count_if(F.col("event_type") == "complete"),
         F.sum("watch_ms"), F.hll_sketch_estimate(F.hll_sketch_agg("user_id", 14)))
    .write.format("noop").mode("overwrite").save())
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def _tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def run_measured(code: str, args: list[str], log_path: Path) -> tuple[dict, float]:
    """Run a Python job in a fresh process; returns its JSON result and peak RSS (MiB) of its tree."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=log, env=env, text=True
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_kb(proc.pid))
            done.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate(timeout=3600)
    done.set()
    sampler.join()
    log.close()
    if proc.returncode != 0:
        raise SystemExit(f"benchmark job failed with exit code {proc.returncode}; see {log_path}")
    return json.loads(out.strip().splitlines()[-1]), peak / 1024


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--per-trigger", type=int, default=10, help="source.max_files_per_trigger")
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--skip-bare", action="store_true")
    args = parser.parse_args()

    from streaming.simulate import SimulationSpec, simulate, write_dimension, write_files

    work = args.workdir / f"events-{args.events}"
    incoming = work / "incoming"
    if not incoming.exists():
        started = time.perf_counter()
        spec = SimulationSpec(events=args.events, files=args.files, contents=5000, users=200_000, seed=42)
        traffic = simulate(spec)
        write_files(traffic, incoming, spec)
        write_dimension(traffic, work / "dimensions" / "content.csv")
        print(f"generated {len(traffic.lines):,} lines in {time.perf_counter() - started:.0f} s")
    for leftover in ("lake", "checkpoints", "warehouse.duckdb"):
        target = work / leftover
        shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)

    overrides = [
        f"source.path={incoming}",
        f"source.max_files_per_trigger={args.per_trigger}",
        f"dimensions.content_path={work / 'dimensions' / 'content.csv'}",
        f"lake.path={work / 'lake'}",
        f"warehouse.url=duckdb:///{work / 'warehouse.duckdb'}",
        f"checkpoint.path={work / 'checkpoints'}",
    ]
    pipeline, pipeline_peak = run_measured(PIPELINE_JOB, overrides, work / "pipeline.log")
    records = pipeline["totals"]["ingest"]["records_in"]
    durations = [d / 1000 for q in pipeline["durations_ms"].values() for d in q]
    rows = [
        ("pipeline (2 queries, all sinks)", pipeline["seconds"], pipeline_peak),
    ]
    if not args.skip_bare:
        bare, bare_peak = run_measured(BARE_JOB, [str(incoming)], work / "bare.log")
        rows.append(("bare batch job (parse + aggregate)", bare["seconds"], bare_peak))

    print(f"\n{records:,} records, {args.files} files, {args.per_trigger} files per trigger, 2 cores")
    print(f"{'job':38} {'seconds':>8} {'events/s':>10} {'µs/event':>9} {'peak RSS MiB':>13}")
    for name, seconds, peak in rows:
        rate, cost = records / seconds, seconds / records * 1e6
        print(f"{name:38} {seconds:8.1f} {rate:10,.0f} {cost:9.1f} {peak:13,.0f}")
    p50, p95 = percentile(durations, 0.5), percentile(durations, 0.95)
    batches = len(durations)
    print(f"micro-batch latency: p50 {p50:.1f} s, p95 {p95:.1f} s over {batches} batches (both queries)")
    if len(rows) == 2:
        print(f"pipeline / bare time ratio: {rows[0][1] / rows[1][1]:.2f}")
    print("totals:", json.dumps(pipeline["totals"]))
    print("mean batch seconds:", f"{statistics.mean(durations):.2f}" if durations else "-")
    return 0


if __name__ == "__main__":
    sys.exit(main())
