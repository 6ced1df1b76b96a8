"""What the benchmark scripts share: timed child processes, process-tree memory, progress lines, percentiles.

A measured job runs in its own session (process group), so its whole tree - the Python driver, the JVM it
launches and the JVM's Python workers - can be sampled through ``/proc`` and, if it overruns, ended
without touching any other process on the machine.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# One line per micro-batch with data, written by streaming/listener.py, e.g.
# "20:01:02 INFO  [ingest] batch 3: in=102000 5230 rows/s 19503 ms records=... state=..."
BATCH_LINE = re.compile(
    r"\[(?P<query>[\w.-]+)\] batch (?P<batch>\d+): in=(?P<rows>\d+) \S+ rows/s (?P<ms>\d+) ms"
)


def job_env() -> dict[str, str]:
    """The environment of a measured job: this interpreter for Spark's Python workers, quiet warnings."""
    python = str(BIN / "python")
    return {**os.environ, "PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python}


def read_stat(path: str) -> tuple[str, list[str]] | None:
    """A ``/proc/<pid>/stat`` (or ``/proc/<pid>/task/<tid>/stat``): the name, and the fields after it
    (``fields[0]`` is the state; ppid, pgrp, ..., utime (11), stime (12) follow: proc(5), shifted by 2);
    None when the process or thread has ended."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    return text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()


def cpu_ticks(fields: Sequence[str]) -> int:
    """utime + stime of a :func:`read_stat` result's fields."""
    return int(fields[11]) + int(fields[12])


def _proc_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (parent pid, process group, CPU ticks used) of every live process (zombies left out)."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = read_stat(f"/proc/{entry.name}/stat")
        if stat is None or stat[1][0] == "Z":
            continue
        fields = stat[1]
        table[int(entry.name)] = (int(fields[1]), int(fields[2]), cpu_ticks(fields))
    return table


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


SPAWN_HELPER = "jspawnhelper"


def command_words(pid: int) -> list[bytes] | None:
    """A process's command line, word by word; None when it has ended."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return None


def _command(pid: int) -> str:
    """A process's program and first arguments, short."""
    words = command_words(pid)
    if words is None:
        return "?"
    return " ".join(w.decode(errors="replace").rsplit("/", 1)[-1] for w in words[:3] if w)[:60]


def tree_pids(root: int, table: dict[int, tuple[int, int, int]]) -> list[int]:
    """``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def group_pids(pgid: int) -> list[int]:
    """Processes still alive in a process group."""
    return [pid for pid, (_, group, _) in _proc_table().items() if group == pgid]


class TreeSampler:
    """Samples a process tree every ``interval`` seconds: peak resident memory and CPU time used.

    Memory is the sum of VmRSS over the tree at one instant (shared pages counted per process, as
    ``ps`` does), leaving out a child that shares its parent's pages until it runs its own program (the
    JVM's spawn helper, a fork that has not yet exec'd). CPU time is the last value seen for each process
    of the tree, so a process that lives less than one interval may be missed.
    """

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_rss_kib = 0
        self.peak_processes: list[tuple[int, str]] = []  # (VmRSS KiB, command) of each process at the peak
        self._cpu_ticks: dict[int, int] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def sample(self) -> None:
        table = _proc_table()
        pids = tree_pids(self.pid, table)
        # The JVM starts each child process (Python workers, shell commands) through jspawnhelper; until
        # the child has run its own program it shares the JVM's pages, so its VmRSS is the JVM's again.
        commands = {pid: _command(pid) for pid in pids}
        sizes = {
            pid: _rss_kib(pid)
            for pid in pids
            if not commands[pid].startswith(SPAWN_HELPER) and commands[pid] != commands.get(table[pid][0])
        }
        if sum(sizes.values()) > self.peak_rss_kib:
            self.peak_rss_kib = sum(sizes.values())
            self.peak_processes = sorted(((size, _command(pid)) for pid, size in sizes.items()), reverse=True)
        for pid in pids:
            self._cpu_ticks[pid] = table[pid][2]

    def _run(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(self.interval)

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss_kib / 1024

    @property
    def cpu_seconds(self) -> float:
        return sum(self._cpu_ticks.values()) / CLOCK_TICKS


def end_group(proc: subprocess.Popen, grace_s: float = 30.0, linger_s: float = 10.0) -> None:
    """End a job started with ``start_new_session=True`` and everything in its process group.

    If the job has exited, its JVM gets ``linger_s`` to exit on its own; then SIGTERM to the group,
    then SIGKILL.
    """
    pgid = proc.pid
    if proc.poll() is not None:
        deadline = time.monotonic() + linger_s
        while group_pids(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        if not group_pids(pgid) and proc.poll() is not None:
            return
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if proc.poll() is not None and not group_pids(pgid):
                return
            time.sleep(0.2)


@dataclass
class JobResult:
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    returncode: int
    log: Path
    log_text: str = field(repr=False, default="")
    peak_processes: list[tuple[int, str]] = field(repr=False, default_factory=list)  # (KiB, command)


def run_job(cmd: Sequence[str], log: Path, timeout_s: float) -> JobResult:
    """Run ``cmd`` from the repository root in a fresh process; whole-process wall time, tree memory and CPU.

    The clock starts before the process is created and stops when it has exited: interpreter and JVM
    start, every query and shutdown are included. Output (stdout and stderr) goes to ``log``.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd), cwd=ROOT, env=job_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            with TreeSampler(proc.pid) as sampler:
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    end_group(proc)
                    raise SystemExit(f"{cmd[0]} did not finish within {timeout_s:.0f} s; see {log}") from None
                wall = time.perf_counter() - start
        finally:
            end_group(proc)  # leaves nothing behind (a JVM that outlived its driver, a worker)
    return JobResult(
        wall, sampler.cpu_seconds, sampler.peak_rss_mib, proc.returncode, log, log.read_text(),
        sampler.peak_processes,
    )  # fmt: skip


@dataclass(frozen=True)
class BatchLine:
    query: str
    batch: int
    rows: int
    ms: int


def batch_lines(text: str) -> list[BatchLine]:
    """The per-batch progress lines of a pipeline log (batches that read data)."""
    seen: dict[tuple[str, int], BatchLine] = {}
    for m in BATCH_LINE.finditer(text):
        line = BatchLine(m["query"], int(m["batch"]), int(m["rows"]), int(m["ms"]))
        seen[(line.query, line.batch)] = line
    return list(seen.values())


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 1]); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def append_results(path: Path, rows: Sequence[dict]) -> None:
    """Append ``rows`` to the JSON list in ``path`` (created when missing): the results of every run."""
    previous = json.loads(path.read_text()) if path.exists() else []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([*previous, *rows], indent=1))
    print(f"results appended to {path}")


def code_version() -> str:
    """The code measured: this checkout's commit (``-dirty`` with changes), and PYTHONPATH if it is set.

    With ``PYTHONPATH`` pointing at another copy of the code (e.g. ``git archive`` of an earlier commit),
    the app and the bare job import ``streaming`` from there.
    """
    extra = os.environ.get("PYTHONPATH")
    return git_version() + (f" with PYTHONPATH={extra}" if extra else "")


def git_version() -> str:
    """This checkout's commit, with ``-dirty`` when the working tree has changes."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def app_overrides(work: Path, source: Path, dimension: Path) -> list[str]:
    """``--set`` values pointing every path of the app into ``work`` (DuckDB warehouse)."""
    return [
        f"source.path={source}",
        f"dimensions.content_path={dimension}",
        f"lake.path={work / 'lake'}",
        f"warehouse.url=duckdb:///{work / 'warehouse.duckdb'}",
        f"checkpoint.path={work / 'checkpoints'}",
    ]


def set_args(overrides: Sequence[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


# Rows the warehouse of an app run in ``work`` (paths as app_overrides sets them) must hold, counted from
# the lake's engagement table, which the same micro-batches wrote: one row per window key, and one daily
# row per day and subset of the keys rolled up (the sixteen levels of the viewers query).
_LAKE_WINDOWS = """
    SELECT DISTINCT window_start, content_id, affiliate_id, placement, platform
    FROM read_parquet('{lake}/engagement/**/*.parquet', hive_partitioning = true)
"""
_EXPECTED = {
    "content_engagement": "SELECT count(*) FROM ({windows})",
    "daily_unique_viewers": """
        SELECT count(*) FROM (
            SELECT 1 FROM ({windows})
            GROUP BY date_trunc('day', window_start), CUBE (content_id, affiliate_id, placement, platform)
        )""",
}


def warehouse_check(work: Path) -> dict[str, dict[str, int]]:
    """Rows in the run's DuckDB warehouse against what its lake says they must be, per table
    (``{"content_engagement": {"rows": …, "expected": …}, …}``): a load that loses rows shows here."""
    windows = _LAKE_WINDOWS.format(lake=work / "lake")
    with duckdb.connect(str(work / "warehouse.duckdb"), read_only=True) as conn:
        return {
            table: {
                "rows": conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0],
                "expected": conn.execute(expected.format(windows=windows)).fetchall()[0][0],
            }
            for table, expected in _EXPECTED.items()
        }
