"""Throughput of the Python Kinesis source against the raw GetRecords rate of the same local server.

Starts kinesalite on 127.0.0.1 (or uses --endpoint), fills a multi-shard stream, then measures in one run:

  raw, sequential   plain boto3 GetRecords over the shards one after another (Limit 10,000), no pacing
  raw, threaded     the same with one thread per shard
  source fetch      the source's own reading loop (StreamFetcher.fetch), without Spark
  source in Spark   a real query (format mediapulse-kinesis -> noop sink) until every record is processed

and prints records/s with the ratio of the Spark figure (first trigger to last batch with data) to the best
raw figure (target >= 0.8). The source keeps the per-shard limits of real Kinesis (5 calls/s, 2 MB/s) and
the raw loops do not, so use enough shards that those limits are above what the server can serve
(16 shards x 2 MB/s = 32 MB/s here).

    .venv/bin/python bench/kinesis_source.py --events 400000 --shards 16
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.producer import create_stream, send_lines  # noqa: E402
from streaming.config import KinesisSourceConfig as SourceConfig  # noqa: E402
from streaming.config import SparkConfig  # noqa: E402
from streaming.session import build_session  # noqa: E402
from streaming.sources.kinesis import read_kinesis  # noqa: E402
from streaming.sources.kinesis.client import make_client  # noqa: E402
from streaming.sources.kinesis.offsets import KinesisOffset  # noqa: E402
from streaming.sources.kinesis.shards import FetchSettings, StreamFetcher  # noqa: E402

REGION = "us-east-1"


def start_server() -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        ["node", str(ROOT / "scripts" / "kinesalite-loopback.js"), "--port", "0", "--createStreamMs", "0",
         "--deleteStreamMs", "0", "--updateStreamMs", "0", "--shardLimit", "50"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    line = server.stdout.readline()
    if not line.startswith("listening "):
        server.kill()
        raise SystemExit(f"kinesalite did not start: {line}")
    return server, f"http://127.0.0.1:{line.split()[1]}"


def event_line(i: int) -> str:
    return json.dumps(
        {
            "event_id": f"{i:032x}",
            "event_type": "heartbeat",
            "event_time": "2026-01-01T12:00:00.000Z",
            "user_id": f"user-{i % 5000:05d}",
            "session_id": f"session-{i % 20000:06d}",
            "content_id": f"content-{i % 800:04d}",
            "affiliate_id": f"affiliate-{i % 40:02d}",
            "position_seconds": i % 3600,
            "device": {"type": "tv", "os": "tizen", "app_version": "5.12.0"},
        }
    )


def raw_rate(endpoint: str, stream: str, threaded: bool) -> tuple[int, float]:
    client = make_client(endpoint, REGION, max_pool_connections=64)
    shards = [s["ShardId"] for s in client.list_shards(StreamName=stream)["Shards"]]

    def drain(shard: str) -> int:
        answer = client.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
        iterator = answer["ShardIterator"]
        count = 0
        while iterator:
            answer = client.get_records(ShardIterator=iterator, Limit=10_000)
            count += len(answer["Records"])
            iterator = answer.get("NextShardIterator")
            if not answer["Records"] and answer.get("MillisBehindLatest", 0) == 0:
                break
        return count

    started = time.perf_counter()
    if threaded:
        with ThreadPoolExecutor(len(shards)) as pool:
            total = sum(pool.map(drain, shards))
    else:
        total = sum(drain(shard) for shard in shards)
    return total, time.perf_counter() - started


def fetch_rate(endpoint: str, stream: str, max_records: int) -> tuple[int, float]:
    settings = FetchSettings(stream, REGION, endpoint, max_records_per_trigger=max_records)
    fetcher = StreamFetcher(settings)
    offset: KinesisOffset = fetcher.initial_offset()
    started = time.perf_counter()
    total = 0
    while True:
        batches, end = fetcher.fetch(offset)
        total += sum(batch.num_rows for batch in batches)
        if end == offset:
            break
        offset = end
    return total, time.perf_counter() - started


def _instant(progress: dict[str, Any]) -> float:
    return datetime.fromisoformat(progress["timestamp"].replace("Z", "+00:00")).timestamp()


def spark_rate(
    spark: Any, endpoint: str, stream: str, max_records: int, workdir: str
) -> tuple[int, float, float, int]:
    """Rows read by a real query; seconds from its first trigger to the end of its last batch with data
    (steady-state consumption), and seconds from start() to processAllAvailable() returning."""
    cfg = SourceConfig(
        kind="kinesis", stream_name=stream, endpoint_url=endpoint, region=REGION,
        implementation="python", max_records_per_trigger=max_records,
    )  # fmt: skip
    checkpoint = tempfile.mkdtemp(prefix="checkpoint-", dir=workdir)
    started = time.perf_counter()
    query = (
        read_kinesis(spark, cfg, checkpoint)
        .writeStream.format("noop")
        .option("checkpointLocation", checkpoint)
        .start()
    )
    try:
        query.processAllAvailable()
    finally:
        query.stop()
    wall = time.perf_counter() - started
    progress = query.recentProgress
    with_data = [p for p in progress if p["numInputRows"]]
    rows = sum(p["numInputRows"] for p in with_data)
    if not with_data:
        return 0, wall, wall, 0
    last = with_data[-1]
    consuming = _instant(last) + last["durationMs"]["triggerExecution"] / 1000 - _instant(progress[0])
    return rows, consuming, wall, len(with_data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--max-records-per-trigger", type=int, default=100_000)
    parser.add_argument("--endpoint", help="use a running Kinesis-API server instead of starting kinesalite")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_REGION", REGION)
    server, endpoint = (None, args.endpoint) if args.endpoint else start_server()
    try:
        stream = f"bench-{int(time.time())}"
        create_stream(stream, args.shards, endpoint, REGION)
        put = send_lines(
            (event_line(i) for i in range(args.events)), stream=stream, endpoint_url=endpoint, region=REGION,
            progress=False,
        )  # fmt: skip
        print(f"put {put.records} records ({put.bytes / put.records:.0f} B each) on {args.shards} shards "
              f"at {put.records_per_second:,.0f}/s")  # fmt: skip

        figures: dict[str, tuple[int, float]] = {}
        figures["raw, sequential"] = raw_rate(endpoint, stream, threaded=False)
        figures["raw, threaded"] = raw_rate(endpoint, stream, threaded=True)
        figures["source fetch (no Spark)"] = fetch_rate(endpoint, stream, args.max_records_per_trigger)
        spark = build_session(SparkConfig(master="local[2]", shuffle_partitions=2), app_name="bench-kinesis")
        with tempfile.TemporaryDirectory() as workdir:
            limit = args.max_records_per_trigger
            spark_rate(spark, endpoint, stream, limit, workdir)  # warm the JVM and the Python workers
            rows, seconds, wall, batches = spark_rate(spark, endpoint, stream, limit, workdir)
        spark.stop()
        figures[f"source in Spark ({batches} batches)"] = (rows, seconds)
        figures["  same, start() to caught up"] = (rows, wall)

        for name, (count, _) in figures.items():
            if count != args.events:
                raise SystemExit(f"{name}: read {count} records, expected {args.events}")
        rates = {name: count / elapsed for name, (count, elapsed) in figures.items()}
        best_raw = max(rates["raw, sequential"], rates["raw, threaded"])
        ratios = {
            "source in Spark / best raw": rows / seconds / best_raw,
            "same, start() to caught up / best raw": rows / wall / best_raw,
            "source fetch / best raw": rates["source fetch (no Spark)"] / best_raw,
        }
        print(f"{'reader':<34}{'records':>10}{'seconds':>10}{'records/s':>12}")
        for name, (count, elapsed) in figures.items():
            print(f"{name:<34}{count:>10}{elapsed:>10.2f}{rates[name]:>12,.0f}")
        for name, ratio in ratios.items():
            print(f"ratio {name}: {ratio:.2f}")
        print("target: source in Spark / best raw >= 0.8")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "events": args.events,
                        "shards": args.shards,
                        "figures": {k: {"records": r, "seconds": s} for k, (r, s) in figures.items()},
                        "ratios": ratios,
                    },
                    indent=2,
                )
            )
        return 0
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())
