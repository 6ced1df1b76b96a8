"""What a micro-batch costs whatever its size: the long-running app's CPU at a low, steady rate.

    .venv/bin/python bench/batch_cost.py [--every 10] [--settle 180] [--window 90] [--records 2000]
                                         [--workdir bench/out/batch-cost] [--set KEY=VALUE ...]

``.venv/bin/mediapulse run`` (long-running, the config's own trigger) starts in its own process group
on an empty source folder with a DuckDB warehouse; one file of ``--records`` pre-generated records (the
rate steps' traffic, see ``bench/sustained.py``) arrives every ``--every`` seconds. After ``--settle``
seconds (the JVM's compiler settles in the first minutes) the JVM's threads are sampled through
``/proc`` for ``--window`` seconds: CPU seconds per thread group (executor tasks, the queries' driver
threads, JIT compiler, GC, RocksDB, ...) and of the whole process tree, and the mean duration of each
query's batches with data in the window (its progress lines). With a file per trigger of a few
thousand records, nearly all of it is the fixed cost of the queries' micro-batches. Results are appended
to ``<workdir>/results.json``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from measure import (
    BIN,
    CLOCK_TICKS,
    ROOT,
    TreeSampler,
    app_overrides,
    append_results,
    batch_lines,
    code_version,
    command_words,
    cpu_ticks,
    end_group,
    group_pids,
    job_env,
    read_stat,
    set_args,
)
from sustained import pool_files, prepare_pool

from streaming.commands import add_overrides_argument


def thread_cpu(pid: int) -> dict[str, int]:
    """CPU ticks of each live thread of ``pid``, keyed by ``<thread name> <tid>``."""
    ticks = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        stat = read_stat(f"/proc/{pid}/task/{tid}/stat")
        if stat is not None:  # else the thread ended
            ticks[f"{stat[0]} {tid}"] = cpu_ticks(stat[1])
    return ticks


def by_group(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """CPU seconds spent between two samples, per thread group (digits in thread names folded)."""
    groups: Counter[str] = Counter()
    for key, ticks in after.items():
        name = key.rsplit(" ", 1)[0]
        groups[re.sub(r"\d+", "N", name).strip()] += ticks - before.get(key, 0)
    return {name: round(ticks / CLOCK_TICKS, 1) for name, ticks in groups.most_common() if ticks}


def jvm_of(root: int, timeout_s: float = 120.0) -> int:
    """The pid of the Spark JVM in the process group of the app's process ``root``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [pid for pid in group_pids(root) if b"SparkSubmit" in b" ".join(command_words(pid) or [])]
        if found:
            return found[0]
        time.sleep(0.5)
    raise RuntimeError("the app's JVM did not start")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--every", type=float, default=10.0, help="seconds between two arriving files")
    parser.add_argument("--settle", type=float, default=180.0, help="seconds before the window")
    parser.add_argument("--window", type=float, default=90.0, help="seconds measured")
    parser.add_argument("--records", type=int, default=2000, help="records per file")
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out" / "batch-cost")
    add_overrides_argument(parser, "config override for the app")
    parser.add_argument("--label", default="", help="a note stored with the results")
    args = parser.parse_args()

    files_needed = int((args.settle + args.window) / args.every) + 2
    pool = prepare_pool(args.workdir.parent / "sustained", args.records, files_needed, 1.0, 42, 1)
    files, dimension = pool_files(pool, files_needed, 1.0)
    work = args.workdir / "run"
    shutil.rmtree(work, ignore_errors=True)
    source, arriving = work / "incoming", work / "arriving"
    source.mkdir(parents=True)
    arriving.mkdir()
    overrides = [*app_overrides(work, source, dimension), *args.overrides]
    cmd = [str(BIN / "mediapulse"), "run", *set_args(overrides)]
    app_log = work / "app.log"
    with app_log.open("w") as log:
        app = subprocess.Popen(cmd, cwd=ROOT, env=job_env(), stdout=log, stderr=log, start_new_session=True)
    try:
        jvm = jvm_of(app.pid)
        with TreeSampler(app.pid) as tree:
            start = time.monotonic()
            sent, window = 0, None
            while time.monotonic() - start < args.settle + args.window:
                if app.poll() is not None:
                    raise RuntimeError(
                        f"the app exited ({app.returncode}) before the window ended: {app_log}"
                    )
                if window is None and time.monotonic() - start >= args.settle:
                    window = (thread_cpu(jvm), tree.cpu_seconds, time.monotonic(), app_log.stat().st_size)
                staged = arriving / files[sent].path.name
                shutil.copy(files[sent].path, staged)
                staged.rename(source / staged.name)  # atomic arrival
                sent += 1
                time.sleep(max(0.0, start + sent * args.every - time.monotonic()))
            threads, tree_cpu, began, log_offset = window
            groups = by_group(threads, thread_cpu(jvm))
            seconds = time.monotonic() - began
            tree.sample()
            total = tree.cpu_seconds - tree_cpu
    finally:
        end_group(app)
    with app_log.open("rb") as log:
        log.seek(log_offset)
        lines = batch_lines(log.read().decode(errors="replace"))
    batch_ms = {
        query: round(sum(ms) / len(ms))
        for query in sorted({line.query for line in lines})
        if (ms := [line.ms for line in lines if line.query == query])
    }
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "version": code_version(),
        "label": args.label,
        "overrides": args.overrides,
        "every_s": args.every,
        "records_per_file": args.records,
        "settle_s": args.settle,
        "window_s": round(seconds, 1),
        "tree_cpu_s": round(total, 1),
        "cores": round(total / seconds, 2),
        "jvm_threads_cpu_s": groups,
        "mean_batch_ms": batch_ms,
    }
    print(f"{args.label or 'run'}: {total:.1f} CPU s in {seconds:.0f} s = {total / seconds:.2f} cores")
    for name, cpu in list(groups.items())[:10]:
        print(f"  {cpu:7.1f}  {name}")
    print("  mean batch with data, ms: " + ", ".join(f"{q} {ms:,}" for q, ms in batch_ms.items()))
    append_results(args.workdir / "results.json", [result])
    return 0


if __name__ == "__main__":
    sys.exit(main())
