"""Cold, whole-process cost of the pipeline against a bare Spark batch job on the same files, in one run.

    .venv/bin/python bench/pipeline.py [--events 1000000 [5000000 ...]] [--events-per-file 10000]
                                       [--workdir bench/out] [--set KEY=VALUE ...] [--skip-bare]

For each event count N, N events are simulated once (``mediapulse simulate``'s generator: Zipf content
popularity, 2 % client retries, 1 % malformed; N / 10,000 files, every other one gzipped) and kept under
``<workdir>/events-N-files-F/`` for later runs. Then, each in a fresh process and timed from process
creation to exit (interpreter and JVM start included, no warm-up excluded):

* ``pipeline``: ``.venv/bin/mediapulse run --available-now`` with its source, lake, checkpoints and
  DuckDB warehouse pointed into the work folder (every query, every sink);
* ``bare``: ``bench/bare_batch.py`` - ``spark.read.json`` with an explicit schema, the same 5-minute
  window aggregates, a Parquet write.

Reported per job: wall seconds, CPU seconds of the process tree, events/s and µs/event (wall), peak
resident memory of the whole process tree (driver, JVM, Python workers; sampled every 0.5 s), and for the
pipeline the p50/p95 duration of its micro-batches (from its progress lines). With several event counts,
the largest is compared with the smallest: memory should stay within 1.2x and cost per event should not
rise. After the pipeline, its DuckDB warehouse is checked against its lake: one ``content_engagement``
row per window key of the lake's engagement table, one ``daily_unique_viewers`` row per day and rollup
level of those keys; any other count fails the run (exit 1). Results are appended to
``<workdir>/results.json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from measure import (
    BIN,
    ROOT,
    JobResult,
    app_overrides,
    append_results,
    batch_lines,
    code_version,
    percentile,
    run_job,
    set_args,
    warehouse_check,
)

from streaming.commands import add_overrides_argument

MEMORY_GROWTH_LIMIT = 1.2


def count_records(path: Path) -> int:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def simulated_input(workdir: Path, events: int, files: int) -> tuple[Path, Path, int]:
    """The simulated source folder, dimension file and record count for ``events``; generated once."""
    from devtools.simulate import SimulationSpec, simulate, write_dimension, write_files

    data = workdir / f"events-{events}-files-{files}"
    incoming, dimension, manifest = (
        data / "incoming",
        data / "dimensions" / "content.csv",
        data / "input.json",
    )
    if manifest.exists():
        return incoming, dimension, json.loads(manifest.read_text())["records"]
    shutil.rmtree(data, ignore_errors=True)
    started = time.perf_counter()
    spec = SimulationSpec(events=events, files=files, contents=5000, users=200_000, seed=42)
    traffic = simulate(spec)
    paths = write_files(traffic, incoming, spec)
    write_dimension(traffic, dimension)
    records = sum(count_records(p) for p in paths)
    manifest.write_text(json.dumps({"records": records, "files": len(paths), "spec_seed": spec.seed}))
    print(f"simulated {records:,} records in {len(paths)} files in {time.perf_counter() - started:.0f} s")
    return incoming, dimension, records


def batch_stats(result: JobResult) -> dict[str, dict[str, float]]:
    """Per query (and over all queries): number of batches with data, p50 and p95 duration in seconds."""
    lines = batch_lines(result.log_text)
    groups: dict[str, list[float]] = {"all": [line.ms / 1000 for line in lines]}
    for line in lines:
        groups.setdefault(line.query, []).append(line.ms / 1000)
    return {
        name: {"batches": len(values), "p50_s": percentile(values, 0.5), "p95_s": percentile(values, 0.95)}
        for name, values in groups.items()
    }


def job_row(name: str, result: JobResult, records: int) -> dict[str, float | str]:
    return {
        "job": name,
        "wall_s": round(result.wall_s, 2),
        "cpu_s": round(result.cpu_s, 1),
        "events_per_s": round(records / result.wall_s),
        "us_per_event": round(result.wall_s / records * 1e6, 2),
        "peak_rss_mib": round(result.peak_rss_mib),
        # what made up the peak: the largest processes then (MiB, command)
        "peak_processes": [[round(kib / 1024), command] for kib, command in result.peak_processes[:4]],
    }


def measure(
    workdir: Path, events: int, files: int, overrides: list[str], skip_bare: bool, timeout_s: float
) -> dict:
    incoming, dimension, records = simulated_input(workdir, events, files)
    work = workdir / f"run-{events}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    settings = [*app_overrides(work, incoming, dimension), *overrides]

    pipeline = run_job(
        [str(BIN / "mediapulse"), "run", "--available-now", *set_args(settings)],
        work / "pipeline.log",
        timeout_s,
    )
    if pipeline.returncode != 0:
        raise SystemExit(f"pipeline failed (exit {pipeline.returncode}); see {pipeline.log}")
    rows = [job_row("pipeline: mediapulse run --available-now", pipeline, records)]
    result = {
        "events": events,
        "records": records,
        "files": files,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "version": code_version(),
        "overrides": overrides,
        "batches": batch_stats(pipeline),
        "jobs": rows,
        "warehouse": warehouse_check(work),
    }
    if not skip_bare:
        bare = run_job(
            [
                str(BIN / "python"),
                str(ROOT / "bench" / "bare_batch.py"),
                str(incoming),
                str(work / "bare-out"),
                *set_args(overrides),
            ],
            work / "bare.log",
            timeout_s,
        )
        if bare.returncode != 0:
            raise SystemExit(f"bare batch job failed (exit {bare.returncode}); see {bare.log}")
        rows.append(job_row("bare Spark batch job", bare, records))
        result["ratio"] = round(pipeline.wall_s / bare.wall_s, 2)
        result["cpu_ratio"] = round(pipeline.cpu_s / bare.cpu_s, 2)
    return result


def report(result: dict) -> None:
    label = f"{result['label']}: " if result.get("label") else ""
    print(f"\n{label}{result['records']:,} records in {result['files']} files ({result['version']}):")
    print(f"  {'job':42} {'wall s':>8} {'CPU s':>7} {'events/s':>10} {'µs/event':>9} {'peak RSS MiB':>13}")
    for row in result["jobs"]:
        print(
            f"  {row['job']:42} {row['wall_s']:8.1f} {row['cpu_s']:7.0f} {row['events_per_s']:10,}"
            f" {row['us_per_event']:9.1f} {row['peak_rss_mib']:13,}"
        )
        parts = ", ".join(f"{command} {mib:,}" for mib, command in row.get("peak_processes", []))
        print(f"  {'':42} at the peak, MiB: {parts}")
    if "ratio" in result:
        print(f"  pipeline / bare: wall time {result['ratio']:.2f}, CPU time {result['cpu_ratio']:.2f}")
    for query, s in result["batches"].items():
        print(
            f"  batches with data [{query}]: {s['batches']}, p50 {s['p50_s']:.1f} s, p95 {s['p95_s']:.1f} s"
        )
    for table, count in result["warehouse"].items():
        verdict = "ok" if count["rows"] == count["expected"] else "ROWS LOST OR ADDED"
        print(f"  warehouse {table}: {count['rows']:,} rows, the lake says {count['expected']:,}: {verdict}")


def scale_check(small: dict, large: dict) -> None:
    """Memory and cost per event of the largest run against the smallest."""
    a, b = small["jobs"][0], large["jobs"][0]
    memory, cost = b["peak_rss_mib"] / a["peak_rss_mib"], b["us_per_event"] / a["us_per_event"]
    print(f"\npipeline, {large['records']:,} against {small['records']:,} records:")
    verdict = "ok" if memory <= MEMORY_GROWTH_LIMIT else "NOT MET"
    print(
        f"  peak RSS {b['peak_rss_mib']:,} / {a['peak_rss_mib']:,} MiB = {memory:.2f}x "
        f"(limit {MEMORY_GROWTH_LIMIT}x): {verdict}"
    )
    print(
        f"  µs/event {b['us_per_event']:.1f} / {a['us_per_event']:.1f} = {cost:.2f}x "
        f"(must not rise): {'ok' if cost <= 1.0 else 'ROSE'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000], metavar="N")
    parser.add_argument("--events-per-file", type=int, default=10_000, metavar="N")
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out")
    add_overrides_argument(parser, "config override for both jobs, e.g. --set spark.shuffle_partitions=8")
    parser.add_argument("--label", default="", help="a note stored with the results, e.g. 'before'")
    parser.add_argument("--skip-bare", action="store_true", help="run the pipeline only")
    parser.add_argument("--timeout", type=float, default=3600, metavar="S", help="per job (default 3600)")
    args = parser.parse_args()

    workdir = args.workdir.resolve()
    history = workdir / "results.json"
    previous = json.loads(history.read_text()) if history.exists() else []
    results = []
    for events in sorted(set(args.events)):
        files = max(1, events // args.events_per_file)
        result = measure(workdir, events, files, args.overrides, args.skip_bare, args.timeout)
        result["label"] = args.label
        report(result)
        results.append(result)
    if len(results) > 1:
        scale_check(results[0], results[-1])
    else:  # against the latest smaller run with the same overrides, from an earlier invocation
        earlier = [
            r for r in previous if r["events"] < results[0]["events"] and r["overrides"] == args.overrides
        ]
        if earlier:
            print(f"\n(the smaller run is from {earlier[-1]['measured_at']}, {earlier[-1]['version']})")
            scale_check(earlier[-1], results[0])

    print()
    append_results(history, results)
    wrong = [
        f"{r['records']:,} records: {table}"
        for r in results
        for table, count in r["warehouse"].items()
        if count["rows"] != count["expected"]
    ]
    if wrong:
        print(f"the warehouse does not hold what the lake says: {'; '.join(wrong)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
