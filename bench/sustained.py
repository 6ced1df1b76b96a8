"""Long-running throughput and freshness: files arrive at a set rate while ``mediapulse run`` processes them.

    .venv/bin/python bench/sustained.py [--rates 25000 50000 75000 100000] [--duration 120] [--warmup 30]
                                        [--trigger "10 s"] [--file-interval 1] [--workdir bench/out/sustained]
                                        [--set KEY=VALUE ...] [--keep-going] [--prepare-only] [--jobs 1]

For each rate (records per second), in order, with a fresh work folder (source, lake, checkpoints,
DuckDB warehouse):

1. Event files are pre-generated once per rate with the simulator (kept under
   ``<workdir>/pool-<rate>/`` for later runs): one file per ``--file-interval`` seconds of traffic, event
   time advancing at the pace of arrival, 2 % client retries, 1 % malformed.
2. ``.venv/bin/mediapulse run`` (long-running, ``trigger.interval`` = ``--trigger``) starts in its own
   process group; once its ingest and engagement queries have started, the feeder puts one file into
   the source folder every ``--file-interval`` seconds for ``--warmup`` + ``--duration`` seconds: each
   file is copied to a temporary folder outside the source tree, then renamed in (atomic arrival).
3. After the feed, the harness waits (at most ``--drain`` seconds) for every file's rows to reach the
   warehouse, then creates the app's stop marker (``run.stop_marker``); if the app has not exited within
   ``--stop-wait`` seconds its process group gets SIGTERM, then SIGKILL.

Measured over the files that arrived after the warm-up, without touching the warehouse (DuckDB admits
one writer): Spark's checkpoint logs, read as they appear (see ``bench/spark_logs.py``), say which
micro-batch admitted each file and when the batches that carried its rows committed.

* freshness: commit of the file's rows in the warehouse (mtime of the engagement query's
  ``commits/<batch>``) minus the file's arrival (its rename), p50 / p95 / max;
* rates: records offered per second, and records committed to the warehouse per second;
* batch duration per query, p95 (progress lines of batches with data; else checkpoint times);
* backlog (records arrived but not yet in the warehouse): its peak in the second half of the measured
  window against the first half.

A rate is kept up with when every query's p95 batch duration is within its trigger interval (the source's,
``--trigger``; the viewers query's own, ``trigger.viewers_interval``), the backlog
grows by less than one trigger's worth of records, and every file reached the warehouse by the end of
the drain. Stepping stops at the first rate that is not kept up with (``--keep-going`` runs all).
Results go to ``<workdir>/results.json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from measure import (
    BIN,
    ROOT,
    TreeSampler,
    app_overrides,
    append_results,
    batch_lines,
    code_version,
    end_group,
    job_env,
    percentile,
    set_args,
)
from spark_logs import ENGAGEMENT, INGEST, CheckpointLogs

from streaming.commands import add_overrides_argument
from streaming.config import load_config

FILES_PER_CHUNK = 10  # files generated per simulator run (bounds its memory)
READY_TIMEOUT_S = 300.0
POLL_S = 1.0


# ---------------------------------------------------------------- pre-generated traffic


@dataclass(frozen=True)
class PoolFile:
    path: Path
    records: int


def _count_records(path: Path) -> int:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def _chunk(pool: Path, rate: int, file_interval: float, index: int, seed: int) -> None:
    """Simulate chunk ``index``: FILES_PER_CHUNK files of ``file_interval`` seconds of traffic each."""
    from devtools.simulate import DEFAULT_START, SimulationSpec, simulate, write_files

    folder = pool / f"chunk-{index:04d}"
    manifest = pool / f"chunk-{index:04d}.json"
    if manifest.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    span = timedelta(seconds=FILES_PER_CHUNK * file_interval)
    duplicates = SimulationSpec.duplicates
    events = max(1, round(rate * span.total_seconds() / (1 + duplicates)))  # lines = events + retries
    spec = SimulationSpec(
        events=events,
        files=FILES_PER_CHUNK,
        span=span,
        start=DEFAULT_START + index * span,
        contents=5000,
        users=max(3000, events // 5),  # as bench/pipeline.py: 200,000 viewers per 1,000,000 events
        seed=seed * 1_000_003 + index,
    )
    traffic = simulate(spec)
    paths = write_files(traffic, folder, spec)
    files = [{"path": str(p.relative_to(pool)), "records": _count_records(p)} for p in paths]
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps({"files": files, "content_rows": traffic.content_rows}))
    tmp.replace(manifest)


def prepare_pool(
    workdir: Path, rate: int, seconds: float, file_interval: float, seed: int, jobs: int
) -> Path:
    """The folder of pre-generated files for ``rate``, with at least ``seconds`` of traffic."""
    pool = workdir / f"pool-{rate}-every-{file_interval:g}s-seed-{seed}"
    pool.mkdir(parents=True, exist_ok=True)
    chunks = math.ceil(seconds / (FILES_PER_CHUNK * file_interval))
    missing = [i for i in range(chunks) if not (pool / f"chunk-{i:04d}.json").exists()]
    if missing:
        started = time.perf_counter()
        print(f"generating {len(missing)} chunks of {FILES_PER_CHUNK} files at {rate:,} records/s in {pool}")
        if jobs > 1:
            with ProcessPoolExecutor(jobs) as pool_exec:
                list(
                    pool_exec.map(
                        _chunk, *zip(*[(pool, rate, file_interval, i, seed) for i in missing], strict=True)
                    )
                )
        else:
            for i in missing:
                _chunk(pool, rate, file_interval, i, seed)
        print(f"  done in {time.perf_counter() - started:.0f} s")
    return pool


def pool_files(pool: Path, seconds: float, file_interval: float) -> tuple[list[PoolFile], Path]:
    """The first ``seconds`` worth of files, in arrival order, and the content dimension of them all."""
    from devtools.simulate import Traffic, write_dimension

    chunks = math.ceil(seconds / (FILES_PER_CHUNK * file_interval))
    files: list[PoolFile] = []
    contents: dict[str, dict] = {}
    for i in range(chunks):
        manifest = json.loads((pool / f"chunk-{i:04d}.json").read_text())
        files += [PoolFile(pool / f["path"], f["records"]) for f in manifest["files"]]
        for row in manifest["content_rows"]:
            contents.setdefault(row["content_id"], row)  # chunks draw their catalogues independently
    dimension = pool / f"content-{chunks}.csv"
    if not dimension.exists():
        rows = list(contents.values())
        write_dimension(Traffic([], rows, [], [], [], datetime.now(UTC)), dimension)
    return files[: math.ceil(seconds / file_interval)], dimension


# ---------------------------------------------------------------- one step


@dataclass
class Arrival:
    path: str
    records: int
    at: float  # epoch seconds, right after the rename


class Watcher:
    """Polls the checkpoint logs in the background so logs that Spark later compacts or deletes are kept."""

    def __init__(self, logs: CheckpointLogs) -> None:
        self.logs = logs
        self.lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpoint-watcher", daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            self.poll()
            self._done.wait(POLL_S)

    def poll(self) -> None:
        with self.lock:
            self.logs.poll()

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=30)
        self.poll()


def wait_ready(proc: subprocess.Popen, checkpoints: Path, log: Path) -> None:
    """Until the ingest and engagement queries have started (their checkpoint metadata exists)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not all((checkpoints / q / "metadata").exists() for q in (INGEST, ENGAGEMENT)):
        if proc.poll() is not None:
            raise SystemExit(f"the app exited (code {proc.returncode}) before its queries started; see {log}")
        if time.monotonic() > deadline:
            raise SystemExit(f"the app's queries did not start within {READY_TIMEOUT_S:.0f} s; see {log}")
        time.sleep(0.5)


def feed(
    proc: subprocess.Popen, files: list[PoolFile], source: Path, staging: Path, interval: float, log: Path
) -> list[Arrival]:
    """One file every ``interval`` seconds: copy outside the source tree, then rename in."""
    arrivals: list[Arrival] = []
    targets = []
    for i, f in enumerate(files):
        relative = f.path.parent.relative_to(f.path.parents[4])  # the YYYY/MM/DD/HH/ folders
        target = source / relative / f"{i:06d}-{f.path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        targets.append(target)
    staging.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    for i, (f, target) in enumerate(zip(files, targets, strict=True)):
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if proc.poll() is not None:
            raise SystemExit(f"the app exited (code {proc.returncode}) during the feed; see {log}")
        tmp = staging / target.name
        shutil.copyfile(f.path, tmp)
        os.rename(tmp, target)
        arrivals.append(Arrival(str(target), f.records, time.time()))
    behind = time.monotonic() - (start + (len(files) - 1) * interval)
    if behind > 2 * interval:
        print(f"  warning: the feeder ended {behind:.1f} s behind schedule (disk too slow for this rate?)")
    return arrivals


def stop_app(proc: subprocess.Popen, marker: Path, stop_wait_s: float) -> None:
    marker.touch()
    try:
        proc.wait(timeout=stop_wait_s)
    except subprocess.TimeoutExpired:
        print(f"  the app did not stop within {stop_wait_s:.0f} s of the stop marker: SIGTERM")
    end_group(proc, grace_s=60)


def run_step(args: argparse.Namespace, rate: int) -> dict:
    seconds = args.warmup + args.duration
    pool = prepare_pool(args.workdir, rate, seconds, args.file_interval, args.seed, args.jobs)
    files, dimension = pool_files(pool, seconds, args.file_interval)
    work = args.workdir / f"run-{rate}"
    shutil.rmtree(work, ignore_errors=True)
    source, checkpoints, marker, log = work / "source", work / "checkpoints", work / "STOP", work / "app.log"
    source.mkdir(parents=True)
    settings = [
        *app_overrides(work, source, dimension),
        f"trigger.interval={args.trigger}",
        f"run.stop_marker={marker}",
        "run.stop_poll_interval=1 s",
        f"run.stop_timeout={args.stop_wait:g} s",
        *args.overrides,
    ]
    trigger_s = _seconds(args.trigger)
    # The viewers query has a trigger of its own (a daily figure); the others follow the source's.
    viewers_s = load_config(overrides=settings, environ={}).trigger.viewers_interval.total_seconds()
    logs = CheckpointLogs(checkpoints)
    print(
        f"\nrate {rate:,} records/s: {len(files)} files, "
        f"warm-up {args.warmup:g} s, measured {args.duration:g} s"
    )
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN / "mediapulse"), "run", *(["-v"] if args.verbose else []), *set_args(settings)],
            cwd=ROOT,
            env=job_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with TreeSampler(proc.pid) as sampler, Watcher(logs) as watcher:
            wait_ready(proc, checkpoints, log)
            t0 = time.time()
            arrivals = feed(proc, files, source, work / "staging", args.file_interval, log)
            fed_at = time.monotonic()
            while time.monotonic() - fed_at < args.drain and proc.poll() is None:
                with watcher.lock:
                    if all(logs.lineage(a.path).warehouse is not None for a in arrivals):
                        break
                time.sleep(POLL_S)
            drained_s = time.monotonic() - fed_at
            stop_app(proc, marker, args.stop_wait)
    finally:
        end_group(proc, grace_s=30)
    (work / "arrivals.json").write_text(json.dumps([vars(a) for a in arrivals]))
    result = analyse(
        logs, arrivals, t0 + args.warmup, args.duration, trigger_s, log.read_text(), {"viewers": viewers_s}
    )
    result.update(
        rate=rate,
        files=len(arrivals),
        drain_waited_s=round(drained_s, 1),
        exit_code=proc.returncode,
        peak_rss_mib=round(sampler.peak_rss_mib),
        cpu_s=round(sampler.cpu_seconds),
        layout="one reader (records/)" if logs.one_reader else "two readers of the source",
    )
    return result


def _seconds(text: str) -> float:
    from streaming.durations import parse_duration

    return parse_duration(text).total_seconds()


# ---------------------------------------------------------------- analysis


def analyse(
    logs: CheckpointLogs,
    arrivals: list[Arrival],
    start: float,
    duration: float,
    trigger_s: float,
    log_text: str,
    own_triggers: dict[str, float] | None = None,
) -> dict:
    """Freshness, rates, batch durations and backlog over arrivals in ``[start, start + duration)``.

    A query's p95 batch duration is held to its own trigger interval where ``own_triggers`` names one,
    else to ``trigger_s``."""
    own_triggers = own_triggers or {}
    end = start + duration
    lineage = {a.path: logs.lineage(a.path) for a in arrivals}
    measured = [a for a in arrivals if start <= a.at < end]
    offered = sum(a.records for a in measured) / duration
    in_warehouse = [(lineage[a.path].warehouse, a) for a in arrivals if lineage[a.path].warehouse is not None]
    committed_rate = sum(a.records for t, a in in_warehouse if start <= t < end) / duration

    def latencies(stage: str) -> list[float]:
        times = [(getattr(lineage[a.path], stage), a.at) for a in measured]
        return [t - at for t, at in times if t is not None]

    freshness = latencies("warehouse")
    missing = sum(1 for a in measured if lineage[a.path].warehouse is None)

    # Backlog: records arrived but not yet in the warehouse, just before each warehouse commit (its peak).
    commits = sorted({t for t, _ in in_warehouse if start <= t < end})

    def backlog(t: float) -> int:
        arrived = sum(a.records for a in arrivals if a.at <= t)
        done = sum(a.records for c, a in in_warehouse if c < t)
        return arrived - done

    halves = (
        [backlog(t) for t in commits if t < start + duration / 2],
        [backlog(t) for t in commits if t >= start + duration / 2],
    )
    peaks = [max(h) if h else None for h in halves]
    growth = None if peaks[0] is None or peaks[1] is None else peaks[1] - peaks[0]

    batches = batch_durations(logs, log_text, start, math.inf)  # the drain's batches count too
    p95 = {q: percentile(v, 0.95) for q, v in batches.items()}
    keeps_up = (
        bool(batches)
        and all(v <= own_triggers.get(q, trigger_s) for q, v in p95.items())
        and growth is not None
        and growth <= offered * trigger_s
        and missing == 0
    )
    freshness_p95 = percentile(freshness, 0.95)
    return {
        "offered_per_s": round(offered),
        "warehouse_per_s": round(committed_rate),
        "freshness_s": {
            "p50": percentile(freshness, 0.5),
            "p95": freshness_p95,
            "max": max(freshness, default=math.nan),
        },
        "ingested_s_p95": percentile(latencies("ingested"), 0.95),
        "event_log_s_p95": percentile(latencies("event_log"), 0.95),
        "files_measured": len(measured),
        "files_not_in_warehouse": missing,
        "backlog_peaks": peaks,
        "backlog_growth": growth,
        "backlog_at_end": backlog(end),
        "batch_p95_s": p95,
        "batches": {q: len(v) for q, v in batches.items()},
        "trigger_s": trigger_s,
        "keeps_up": keeps_up,
        "meets_target": keeps_up and freshness_p95 <= 3 * trigger_s,
    }


def batch_durations(logs: CheckpointLogs, log_text: str, start: float, end: float) -> dict[str, list[float]]:
    """Durations (s) of the batches each query committed in ``[start, end)``.

    From the app's progress lines (``triggerExecution`` of batches that read data) where it has them,
    else from the checkpoint (commit time minus planning time, every batch).
    """
    lines = {(line.query, line.batch): line.ms / 1000 for line in batch_lines(log_text)}
    found: dict[str, list[float]] = {}
    for name, q in logs.queries.items():
        in_window = {
            b: (planned, done) for b, (planned, done) in q.durations().items() if start <= done < end
        }
        logged = [lines[(name, b)] for b in in_window if (name, b) in lines]
        found[name] = (
            logged
            if any(query == name for query, _ in lines)
            else [done - planned for planned, done in in_window.values()]
        )
    return found


# ---------------------------------------------------------------- report


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def report(results: list[dict]) -> None:
    labels = sorted({r["label"] for r in results if r.get("label")})
    if labels:
        print(f"\n{', '.join(labels)}:", end="")
    print(
        f"\n{'rate':>8} {'offered/s':>10} {'to DWH/s':>9} {'fresh p50':>9} {'fresh p95':>9} "
        f"{'backlog +':>10} {'at end':>9} {'RSS MiB':>8}  batch p95 s per query  verdict"
    )
    for r in results:
        per_query = " ".join(f"{q}={_fmt(v)}" for q, v in sorted(r["batch_p95_s"].items()))
        verdict = "keeps up" if r["keeps_up"] else "FALLS BEHIND"
        if r["keeps_up"] and not r["meets_target"]:
            verdict += " (freshness p95 > 3 triggers)"
        print(
            f"{r['rate']:8,} {r['offered_per_s']:10,} {r['warehouse_per_s']:9,}"
            f" {_fmt(r['freshness_s']['p50']):>9} {_fmt(r['freshness_s']['p95']):>9}"
            f" {_fmt(r['backlog_growth'], ','):>10} {r['backlog_at_end']:9,} {r['peak_rss_mib']:8,}"
            f"  {per_query}  {verdict}"
        )
    kept = [r["rate"] for r in results if r["keeps_up"]]
    lost = [r["rate"] for r in results if not r["keeps_up"]]
    if lost:
        print(
            f"stops keeping up at {min(lost):,} records/s" + (f" (kept up at {max(kept):,})" if kept else "")
        )
    else:
        print(f"kept up at every rate tried (up to {max(kept):,} records/s)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rates",
        type=int,
        nargs="+",
        default=[25_000, 50_000, 75_000, 100_000],
        metavar="R",
        help="records per second, stepped in order",
    )
    parser.add_argument(
        "--duration", type=float, default=120, metavar="S", help="measured feed (default 120)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=30,
        metavar="S",
        help="feed before measuring (default 30; batches reach their steady length after a few minutes: "
        "use 180 or more for a rate that holds)",
    )
    parser.add_argument("--trigger", default="10 s", help="the app's trigger.interval (default '10 s')")
    parser.add_argument(
        "--file-interval",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds between arriving files (default 1)",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=None,
        metavar="S",
        help="max wait after the feed for rows to reach the warehouse (default 6 triggers)",
    )
    parser.add_argument(
        "--stop-wait",
        type=float,
        default=180,
        metavar="S",
        help="max wait for the app to stop after the marker, then SIGTERM (default 180)",
    )
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out" / "sustained")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--jobs", type=int, default=1, help="processes generating traffic (default 1)")
    add_overrides_argument(parser, "config override for the app, e.g. --set source.max_files_per_trigger=20")
    parser.add_argument("--label", default="", help="a note stored with the results, e.g. 'before'")
    parser.add_argument(
        "--verbose", action="store_true", help="run the app with -v: each batch's phases in its log"
    )
    parser.add_argument(
        "--keep-going", action="store_true", help="run every rate, not stop at the first miss"
    )
    parser.add_argument("--prepare-only", action="store_true", help="only generate the traffic files")
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()
    if args.drain is None:
        args.drain = 6 * _seconds(args.trigger)

    if args.prepare_only:
        for rate in args.rates:
            prepare_pool(
                args.workdir, rate, args.warmup + args.duration, args.file_interval, args.seed, args.jobs
            )
        return 0

    results = []
    for rate in args.rates:
        result = run_step(args, rate)
        result.update(
            measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
            version=code_version(),
            duration_s=args.duration,
            warmup_s=args.warmup,
            file_interval_s=args.file_interval,
            overrides=args.overrides,
            label=args.label,
        )
        results.append(result)
        report(results[-1:])
        if not result["keeps_up"] and not args.keep_going:
            break
    print("\nsummary:")
    report(results)
    append_results(args.workdir / "results.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
