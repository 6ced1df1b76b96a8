"""What Parquet dictionary encoding costs when Spark writes the validated records, warm, in one JVM.

    .venv/bin/python bench/parquet_write.py [--records bench/out/run-1000000/checkpoints/records] [--rounds 3]

Reads the records a pipeline run wrote (``bench/pipeline.py`` leaves them under its work folder), caches
them, then writes them as Parquet in turns with: Spark's defaults (a dictionary for every column), the
app's options (no dictionary for :data:`streaming.schema.PLAIN_ENCODED_COLUMNS`), and no dictionary at
all. Prints the best wall time and the size of each.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streaming.config import SparkConfig  # noqa: E402
from streaming.schema import PLAIN_ENCODED_COLUMNS, RECORD_SCHEMA  # noqa: E402
from streaming.session import build_session  # noqa: E402
from streaming.storage import parquet_options  # noqa: E402


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*.parquet")) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, default=ROOT / "bench/out/run-1000000/checkpoints/records")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not (args.records / "_spark_metadata").is_dir():
        parser.error(f"{args.records} holds no validated records: run bench/pipeline.py first")

    spark = build_session(SparkConfig(master="local[2]", shuffle_partitions=4))
    records = spark.read.schema(RECORD_SCHEMA).parquet(str(args.records)).cache()
    rows = records.count()
    variants = {
        "dictionary for every column (Spark's default)": {},
        "app: plain " + ", ".join(PLAIN_ENCODED_COLUMNS): parquet_options(PLAIN_ENCODED_COLUMNS),
        "no dictionary at all": {"parquet.enable.dictionary": "false"},
    }
    best: dict[str, float] = {}
    sizes: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, options in variants.items():
            out = Path(tempfile.mkdtemp(prefix="mediapulse-parquet-"))
            started = time.perf_counter()
            records.write.mode("overwrite").options(**options).parquet(str(out / "t"))
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - started)
            sizes[name] = size_mb(out)
            shutil.rmtree(out, ignore_errors=True)
    print(f"{rows:,} records, best of {args.rounds}:")
    for name in variants:
        print(f"  {name:60s} {best[name]:6.2f} s {sizes[name]:7.1f} MiB")
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
