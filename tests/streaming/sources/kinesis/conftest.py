"""A private Kinesis-API server (kinesalite, pinned in package.json) on loopback for the Kinesis tests."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from devtools.producer import create_stream, send_lines
from streaming.config import KinesisSourceConfig

ROOT = Path(__file__).resolve().parents[4]
LAUNCHER = ROOT / "scripts" / "kinesalite-loopback.js"
GET_RECORDS_LOG = "get-records.jsonl"
REGION = "us-east-1"
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "mediapulse-test", "AWS_SECRET_ACCESS_KEY": "mediapulse-test"}

# Spark's JVM, and the Python workers it starts for the source, keep the environment of the moment the
# session starts, which can be before any fixture here runs: the local server's dummy credentials are
# set when this file is imported, at collection. (They only sign requests to the loopback server.)
for _name, _value in DUMMY_CREDENTIALS.items():
    os.environ.setdefault(_name, _value)


def _await_port(process: subprocess.Popen[str], timeout: float) -> int:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = process.stdout.readline()
        if line.startswith("listening "):
            return int(line.split()[1])
        if not line and process.poll() is not None:
            break
    raise RuntimeError(f"kinesalite did not start within {timeout:.0f} s (exit code {process.poll()})")


def _await_answer(client: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.list_streams()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="session")
def kinesalite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the local server writes its log and its log of GetRecords calls."""
    return tmp_path_factory.mktemp("kinesalite")


@pytest.fixture(scope="session")
def kinesis_endpoint(kinesalite_dir: Path) -> Iterator[str]:
    """kinesalite on 127.0.0.1 and a free port, with streams created and resharded without delay, logging
    every GetRecords call it serves (see ``get_records_calls``)."""
    if shutil.which("node") is None or not (ROOT / "node_modules" / ".bin" / "kinesalite").exists():
        pytest.skip("kinesalite is not installed: run `npm ci` (make test does)")
    with pytest.MonkeyPatch.context() as env:
        for name, value in DUMMY_CREDENTIALS.items():
            env.setenv(name, os.environ.get(name, value))
        log = (kinesalite_dir / "kinesalite.log").open("w")
        process = subprocess.Popen(
            ["node", str(LAUNCHER), "--port", "0", "--createStreamMs", "0", "--deleteStreamMs", "0",
             "--updateStreamMs", "0", "--shardLimit", "50",
             "--getRecordsLog", str(kinesalite_dir / GET_RECORDS_LOG)],
            stdout=subprocess.PIPE, stderr=log, text=True,
        )  # fmt: skip
        try:
            endpoint = f"http://127.0.0.1:{_await_port(process, timeout=20)}"
            _await_answer(kinesis_client_for(endpoint), timeout=10)
            yield endpoint
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


@pytest.fixture(scope="session")
def get_records_calls(kinesis_endpoint: str, kinesalite_dir: Path) -> Callable[[str], dict[str, list[float]]]:
    """``get_records_calls(stream)``: when the local server received each GetRecords call on each shard
    of ``stream`` so far (epoch seconds, by the server's clock), in arrival order, keyed by shard id."""
    path = kinesalite_dir / GET_RECORDS_LOG

    def calls(stream: str) -> dict[str, list[float]]:
        by_shard: dict[str, list[float]] = {}
        logged = path.read_text()
        for line in logged[: logged.rfind("\n") + 1].splitlines():  # not a line still being written
            call = json.loads(line)
            if call["stream"] == stream:
                by_shard.setdefault(call["shardId"], []).append(call["time"])
        return by_shard

    return calls


def kinesis_client_for(endpoint: str) -> Any:
    return boto3.session.Session().client(
        "kinesis", endpoint_url=endpoint, region_name=REGION, config=Config(retries={"total_max_attempts": 1})
    )


@pytest.fixture(scope="session")
def kinesis(kinesis_endpoint: str) -> Any:
    """A plain boto3 Kinesis client on the local server, for arranging tests and checking results."""
    return kinesis_client_for(kinesis_endpoint)


def put_lines(endpoint: str, stream: str, lines: Iterable[str]) -> None:
    """Send ``lines`` to ``stream`` on the local server with the producer, a record a line."""
    send_lines(lines, stream=stream, endpoint_url=endpoint, region=REGION, progress=False)


@pytest.fixture
def make_stream(kinesis_endpoint: str) -> Callable[[int], str]:
    """Create a fresh, uniquely named stream with the given number of shards; returns its name."""

    def make(shards: int = 2) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        create_stream(name, shards, kinesis_endpoint, REGION, timeout=10)
        return name

    return make


@pytest.fixture
def source_config(kinesis_endpoint: str) -> Callable[..., KinesisSourceConfig]:
    """``source_config(stream, **overrides)``: the Kinesis source on the local server."""

    def build(stream: str, **overrides: Any) -> KinesisSourceConfig:
        values: dict[str, Any] = {
            "kind": "kinesis",
            "stream_name": stream,
            "endpoint_url": kinesis_endpoint,
            "region": REGION,
            "implementation": "python",
        }
        values.update(overrides)
        return KinesisSourceConfig(**values)

    return build
