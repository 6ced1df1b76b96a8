"""N random kill -9s of the running app, then a clean run: warehouse and lake must equal the oracle.

    .venv/bin/python scripts/chaos.py --kills 20 [--events 20000] [--files 20] [--seed 1] [--workdir DIR]

Simulated traffic (duplicates and malformed records included) is released into the source folder at
once; the app runs long-running (`mediapulse run`, one file per trigger, 1 s trigger) and is killed with
SIGKILL a random 8 to 60 s after its start (JVM start included), N times; each restart resumes from the
checkpoints. A final
`run --available-now` finishes the work. The totals are then checked against the independent oracle
(tests/oracle.py): every warehouse window row, the lake's event log and quarantine read with DuckDB
(the partition-layout glob), and the ledger (no batch twice). Prints one line per kill and a summary;
exits 1 when anything differs.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import oracle  # noqa: E402
from tests.pipeline import make_scenario, warehouse_rows  # noqa: E402
from tests.streaming.test_crash import lake_counts  # noqa: E402
from tests.streaming.test_exactly_once import ledger  # noqa: E402

METRICS = ("impressions", "clicks", "play_starts", "completions", "watch_time_ms")


def app_args(root: Path) -> list[str]:
    settings = {
        "source.path": root / "incoming",
        "dimensions.content_path": root / "dimensions" / "content.csv",
        "lake.path": root / "lake",
        "warehouse.url": f"duckdb:///{root / 'warehouse.duckdb'}",
        "checkpoint.path": root / "checkpoints",
        "metrics.path": root / "metrics.jsonl",
        "trigger.interval": "1 s",
        "source.max_files_per_trigger": 1,
    }
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]


def committed(root: Path) -> dict[str, int]:
    """How many batches each query has committed so far (from its checkpoint)."""
    counts = {}
    for query in ("ingest", "events", "engagement"):
        commits = root / "checkpoints" / query / "commits"
        counts[query] = len([p for p in commits.iterdir() if p.name.isdigit()]) if commits.exists() else 0
    return counts


def run_app(root: Path, *extra: str, kill_after: float | None = None) -> int:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streaming.cli", "run", *app_args(root), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        if kill_after is None:
            return proc.wait(timeout=1800)
        try:
            return proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="how many times the app is killed")
    parser.add_argument("--events", type=int, default=20_000, help="simulated events")
    parser.add_argument("--files", type=int, default=20, help="files they are written to")
    parser.add_argument("--seed", type=int, default=1, help="seed of the traffic and of the kill times")
    parser.add_argument("--workdir", type=Path, default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()

    root = args.workdir or Path(tempfile.mkdtemp(prefix="mediapulse-chaos-"))
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    rng = random.Random(args.seed)
    scenario = make_scenario(root, events=args.events, files=args.files, seed=args.seed)
    scenario.release()
    truth = oracle.expected(scenario.incoming_files(), scenario.now)

    started = time.monotonic()
    for kill in range(1, args.kills + 1):
        after = rng.uniform(8, 60)
        code = run_app(root, kill_after=after)
        line = f"kill {kill:2d}: SIGKILL after {after:4.1f} s (exit {code}); committed {committed(root)}"
        print(line, flush=True)
    code = run_app(root, "--available-now")
    if code != 0:
        print(f"the final run --available-now exited {code}")
        return 1

    from streaming.config import load_config

    cfg = load_config(overrides=[a for a in app_args(root) if a != "--set"], environ={})
    actual = warehouse_rows(cfg)
    wrong = [
        key
        for key, expected in truth.aggregates.items()
        if key not in actual or {m: actual[key][m] for m in METRICS} != {m: expected[m] for m in METRICS}
    ]
    extra = set(actual) - set(truth.aggregates)
    lake = lake_counts(root / "lake")
    batches = ledger(cfg)
    lost_events = truth.valid_unique - lake[1]
    print(
        f"{args.kills} kills in {time.monotonic() - started:.0f} s; "
        f"warehouse window rows {len(actual)} (truth {len(truth.aggregates)}), "
        f"wrong {len(wrong)}, extra {len(extra)}; "
        f"lake events {lake[0]} rows / {lake[1]} ids (truth {truth.valid_unique}), "
        f"quarantine {lake[2]} (truth {truth.quarantined}); ledger rows {len(batches)}, "
        f"repeated {len(batches) - len(set(batches))}; events lost {lost_events}"
    )
    exact = (
        not wrong
        and not extra
        and lake == (truth.valid_unique, truth.valid_unique, truth.quarantined)
        and len(batches) == len(set(batches))
    )
    print("EXACT" if exact else "NOT EXACT")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
