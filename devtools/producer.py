"""Put newline-delimited JSON events on a Kinesis stream, the way a well-behaved producer does.

``send_lines`` batches PutRecords calls within the API limits (500 records, 5 MiB per call, 1 MiB per
record), keys each record by the event's ``user_id`` (else ``session_id``, else a hash of the line) so a
viewer's events stay in order on one shard, re-sends only the entries Kinesis rejected (with capped,
fully jittered backoff: :mod:`streaming.retry`), optionally holds a rate in records per second, and shows
progress on stderr.
``create_stream`` creates a stream (or finds it) and waits until it is ACTIVE.

Also a small command line for scripts: ``python -m devtools.producer create-stream NAME --shards 4``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from tenacity import retry_if_result

from streaming.retry import retrying

logger = logging.getLogger(__name__)

MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024  # data and partition keys of the whole request
MAX_BYTES_PER_RECORD = 1024 * 1024  # data and partition key of one record
MAX_PARTITION_KEY_CHARS = 256

_RETRYABLE_CALL_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "KMSThrottlingException",
        "InternalFailure",
        "ServiceUnavailable",
    }
)


class ProducerError(RuntimeError):
    """Records could not be put on the stream."""


class RecordTooLargeError(ProducerError):
    """A line is larger than Kinesis accepts for one record (1 MiB with its partition key)."""


@dataclass(frozen=True)
class SendReport:
    """What ``send_lines`` did."""

    records: int  # records accepted by Kinesis
    calls: int  # PutRecords calls made, retries included
    retried: int  # entries re-sent after Kinesis rejected them
    bytes: int  # data and partition-key bytes accepted
    seconds: float
    per_shard: dict[str, int] = field(default_factory=dict)

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("inf")


def default_partition_key(line: str) -> str:
    """The event's ``user_id``, else its ``session_id``, else (not JSON or neither) an MD5 of the line."""
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    if isinstance(event, dict):
        for name in ("user_id", "session_id"):
            value = event.get(name)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)[:MAX_PARTITION_KEY_CHARS]
    return hashlib.md5(line.encode("utf-8")).hexdigest()


def _client(endpoint_url: str | None, region: str | None) -> Any:
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=30)
    return boto3.session.Session().client(
        "kinesis", endpoint_url=endpoint_url, region_name=region, config=config
    )


def _entry_size(entry: dict[str, Any]) -> int:
    return len(entry["Data"]) + len(entry["PartitionKey"].encode("utf-8"))


def batch_entries(
    entries: Iterable[dict[str, Any]], max_records: int = MAX_RECORDS_PER_CALL
) -> Iterator[list[dict[str, Any]]]:
    """Group PutRecords entries into calls of at most ``max_records`` records and 5 MiB."""
    batch: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        entry_size = _entry_size(entry)
        if entry_size > MAX_BYTES_PER_RECORD:
            raise RecordTooLargeError(
                f"a record of {entry_size} bytes (partition key {entry['PartitionKey']!r}) exceeds "
                f"Kinesis' {MAX_BYTES_PER_RECORD} bytes per record"
            )
        if batch and (len(batch) >= max_records or size + entry_size > MAX_BYTES_PER_CALL):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry_size
    if batch:
        yield batch


class _Sender:
    """One PutRecords batch at a time, re-sending only the rejected entries with backoff (full jitter)."""

    def __init__(
        self,
        client: Any,
        stream: str,
        max_attempts: int,
        base_delay: float,
        max_delay: float,
        sleep: Callable[[float], None],
    ) -> None:
        self.client = client
        self.stream = stream
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.calls = 0
        self.retried = 0
        self.per_shard: dict[str, int] = {}

    def send(self, batch: Sequence[dict[str, Any]]) -> None:
        """Put ``batch`` in at most ``max_attempts`` calls; each call after the first re-sends what Kinesis
        rejected (every entry, when it throttled or failed the whole call)."""
        pending = list(batch)
        last_errors: dict[str, int] = {}
        attempts = 0

        def put() -> list[dict[str, Any]]:
            """One call with the pending entries; returns those still rejected."""
            nonlocal pending, last_errors, attempts
            if attempts:
                self.retried += len(pending)
            attempts += 1
            self.calls += 1
            try:
                answer = self.client.put_records(StreamName=self.stream, Records=pending)
            except ClientError as e:
                code = e.response.get("Error", {}).get("Code", "")
                if code not in _RETRYABLE_CALL_ERRORS:
                    raise ProducerError(f"PutRecords on stream {self.stream!r} failed: {e}") from e
                last_errors = {code: len(pending)}
                return pending
            failed: list[dict[str, Any]] = []
            last_errors = {}
            for entry, result in zip(pending, answer["Records"], strict=True):
                if result.get("ErrorCode"):
                    failed.append(entry)
                    last_errors[result["ErrorCode"]] = last_errors.get(result["ErrorCode"], 0) + 1
                else:
                    shard = result.get("ShardId", "?")
                    self.per_shard[shard] = self.per_shard.get(shard, 0) + 1
            if failed:
                logger.debug(
                    "PutRecords %s: %d of %d rejected %s", self.stream, len(failed), len(pending), last_errors
                )
            pending = failed
            return failed

        calls = retrying(
            attempts=self.max_attempts,
            base_delay=self.base_delay,
            max_delay=self.max_delay,
            retry=retry_if_result(bool),
            sleep=self.sleep,
        )
        rejected = calls(put)
        if rejected:
            raise ProducerError(
                f"{len(rejected)} records were still rejected by stream {self.stream!r} after "
                f"{self.max_attempts} attempts: {last_errors}"
            )


def send_lines(
    lines: Iterable[str],
    *,
    stream: str,
    endpoint_url: str | None = None,
    region: str | None = None,
    rate: float | None = None,
    partition_key: Callable[[str], str] | None = None,
    client: Any = None,
    max_attempts: int = 8,
    base_delay: float = 0.1,
    max_delay: float = 5.0,
    progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> SendReport:
    """Put every line on ``stream`` as one record; returns what was sent.

    ``rate`` caps records per second (``None``: as fast as Kinesis accepts). Raises
    :class:`ProducerError` when entries are still rejected after ``max_attempts`` calls and
    :class:`RecordTooLargeError` for a line over 1 MiB.
    """
    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be > 0 records per second, got {rate}")
    key_of = partition_key or default_partition_key
    sender = _Sender(
        client or _client(endpoint_url, region), stream, max_attempts, base_delay, max_delay, sleep
    )
    # At a set rate, send about five calls a second so records are spread over each second.
    per_call = MAX_RECORDS_PER_CALL if rate is None else max(1, min(MAX_RECORDS_PER_CALL, int(rate / 5)))
    total = len(lines) if isinstance(lines, Sequence) else None

    def entries() -> Iterator[dict[str, Any]]:
        for line in lines:
            text = line.rstrip("\r\n")
            yield {"Data": text.encode("utf-8"), "PartitionKey": key_of(text)}

    started = time.monotonic()
    sent = 0
    sent_bytes = 0
    bar = Progress(
        TextColumn(f"[bold]kinesis {stream}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not progress,
        transient=False,
    )
    with bar:
        task = bar.add_task("put", total=total)
        for batch in batch_entries(entries(), per_call):
            if rate is not None:
                ahead = started + sent / rate - time.monotonic()
                if ahead > 0:
                    sleep(ahead)
            sender.send(batch)
            sent += len(batch)
            sent_bytes += sum(_entry_size(entry) for entry in batch)
            bar.update(task, advance=len(batch))
    report = SendReport(
        records=sent,
        calls=sender.calls,
        retried=sender.retried,
        bytes=sent_bytes,
        seconds=time.monotonic() - started,
        per_shard=dict(sorted(sender.per_shard.items())),
    )
    logger.info(
        "put %d records (%d bytes) on %s in %.1f s with %d calls, %d re-sent",
        report.records,
        report.bytes,
        stream,
        report.seconds,
        report.calls,
        report.retried,
    )
    return report


def create_stream(
    name: str,
    shards: int,
    endpoint_url: str | None = None,
    region: str | None = None,
    *,
    timeout: float = 60.0,
    client: Any = None,
) -> None:
    """Create ``name`` with ``shards`` shards (or keep the existing one) and wait until it is ACTIVE."""
    if shards < 1:
        raise ValueError(f"a stream needs at least one shard, got {shards}")
    kinesis = client or _client(endpoint_url, region)
    try:
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        logger.info("creating Kinesis stream %s with %d shards", name, shards)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise ProducerError(f"cannot create Kinesis stream {name!r}: {e}") from e
        logger.info("Kinesis stream %s already exists", name)
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        status = summary["StreamStatus"]
        if status == "ACTIVE":
            if summary.get("OpenShardCount", shards) != shards:
                logger.warning(
                    "stream %s has %s open shards, not %d", name, summary.get("OpenShardCount"), shards
                )
            return
        if status == "DELETING" or time.monotonic() + delay > deadline:
            raise ProducerError(f"Kinesis stream {name!r} is {status}, not ACTIVE, after {timeout:.0f} s")
        time.sleep(delay)
        delay = min(1.0, delay * 2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.producer", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-stream", help="create a stream and wait until it is ACTIVE")
    create.add_argument("name")
    create.add_argument("--shards", type=int, default=2)
    create.add_argument("--endpoint", metavar="URL", help="Kinesis endpoint URL, e.g. a local server")
    create.add_argument("--region", help="AWS region (default: from the environment)")
    create.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        create_stream(args.name, args.shards, args.endpoint, args.region, timeout=args.timeout)
    except (ProducerError, ClientError, BotoCoreError, ValueError) as e:
        parser.exit(1, f"create-stream: {e}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
