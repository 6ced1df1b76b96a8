"""The boto3 side of the Python Kinesis source: client, retries with backoff (:mod:`streaming.retry`),
per-shard pacing."""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from tenacity import RetryCallState, retry_if_exception

from streaming.retry import FullJitter, retrying
from streaming.sources.kinesis.errors import KinesisSourceError, KinesisThrottledError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Real Kinesis read limits per shard: 5 GetRecords calls and 2 MB per second (shared by all consumers
# that poll the shard; enhanced fan-out consumers have their own 2 MB/s each).
GET_RECORDS_PER_SECOND = 5
QUOTA_WINDOW = 1.0  # seconds: the quota holds for every window this long, as the server counts
READ_BYTES_PER_SECOND = 2 * 1000 * 1000
MAX_RECORDS_PER_CALL = 10_000

THROTTLING_ERRORS = frozenset(
    {"ProvisionedThroughputExceededException", "LimitExceededException", "KMSThrottlingException"}
)
TRANSIENT_ERRORS = frozenset({"InternalFailure", "InternalServerError", "ServiceUnavailable"})
_CONNECTION_ERRORS = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _raw_timestamp(value: Any) -> Any:
    return value


def make_client(endpoint_url: str | None, region: str | None, max_pool_connections: int = 10) -> Any:
    """A Kinesis client whose retries are ours (botocore's own retrying is switched off).

    Timestamps stay as Kinesis sends them (epoch seconds) instead of becoming ``datetime`` objects:
    Arrow converts a whole column of them at once, which saves a good part of the per-record cost.
    """
    config = Config(
        retries={"total_max_attempts": 1},
        connect_timeout=10,
        read_timeout=30,
        max_pool_connections=max_pool_connections,
    )
    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_raw_timestamp)
    return boto3.session.Session(botocore_session=core).client(
        "kinesis", endpoint_url=endpoint_url, region_name=region, config=config
    )


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: retry ``n`` (from 0) waits ``U(0, min(max, base * 2**n))``."""

    max_retries: int = 8
    base_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, attempt: int, draw: Callable[[], float] = random.random) -> float:
        return FullJitter(self.base_delay, self.max_delay, draw).delay(attempt)


def _retryable(error: BaseException) -> bool:
    if isinstance(error, ClientError):
        return error_code(error) in THROTTLING_ERRORS | TRANSIENT_ERRORS
    return isinstance(error, _CONNECTION_ERRORS)


def _reason(error: BaseException | None) -> str:
    return error_code(error) if isinstance(error, ClientError) else type(error).__name__


def call_with_retries(
    operation: Callable[[], T],
    *,
    what: str,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    draw: Callable[[], float] = random.random,
) -> T:
    """Run ``operation``; on throttling or a transient failure retry with backoff, ``max_retries`` times.

    Raises :class:`KinesisThrottledError` when throttling outlasts the retries, :class:`KinesisSourceError`
    for a transient failure that does; any other error propagates unchanged.
    """

    def log_retry(state: RetryCallState) -> None:
        assert state.outcome is not None and state.next_action is not None
        reason = _reason(state.outcome.exception())
        logger.debug(
            "%s: %s, retry %d in %.3f s", what, reason, state.attempt_number, state.next_action.sleep
        )

    calls = retrying(
        attempts=policy.max_retries + 1,
        base_delay=policy.base_delay,
        max_delay=policy.max_delay,
        retry=retry_if_exception(_retryable),
        sleep=sleep,
        draw=draw,
        before_sleep=log_retry,
    )
    try:
        return calls(operation)
    except (ClientError, *_CONNECTION_ERRORS) as e:
        if not _retryable(e):
            raise
        retries = policy.max_retries
        if isinstance(e, ClientError) and error_code(e) in THROTTLING_ERRORS:
            raise KinesisThrottledError(
                f"{what}: still throttled by Kinesis ({error_code(e)}) after {retries} retries; "
                "another consumer may be reading the same shards, or raise source.max_retries"
            ) from e
        detail = error_code(e) if isinstance(e, ClientError) else e
        raise KinesisSourceError(f"{what}: {detail} after {retries} retries") from e


class ShardPacer:
    """Keeps one reader's GetRecords calls on a shard within Kinesis's read quota.

    Kinesis counts a call at some moment between the request leaving this process and its answer
    arriving here. Two rules keep every one-second window, as the server sees it, within the quota of
    ``calls_per_second`` calls whatever the network delay:

    * a call starts at least one second after the call ``calls_per_second`` calls before it *returned*;
    * a call starts no sooner than ``1 / calls_per_second`` after the previous one started, nor before
      the bytes that one returned could have been served at 2 MB/s (a 10 MB answer buys five quiet
      seconds, as Kinesis requires). This spreads the calls evenly over the second.

    Every attempt counts, a failed or throttled one too: each runs through :meth:`call`.
    """

    def __init__(
        self,
        calls_per_second: int = GET_RECORDS_PER_SECOND,
        bytes_per_second: float = READ_BYTES_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if calls_per_second < 1:
            raise ValueError(f"calls_per_second must be at least 1, not {calls_per_second}")
        self._interval = 1.0 / calls_per_second
        self._bytes_per_second = bytes_per_second
        self._clock = clock
        self._sleep = sleep
        self._next_call = float("-inf")
        self._returned: deque[float] = deque(maxlen=calls_per_second)  # when the latest calls returned

    def ready_at(self) -> float:
        """The earliest moment (on this pacer's clock) the next call may start."""
        ready = self._next_call
        if len(self._returned) == self._returned.maxlen:
            ready = max(ready, self._returned[0] + QUOTA_WINDOW)
        return ready

    def wait(self, deadline: float | None = None) -> bool:
        """Sleep until the next call may start; ``False`` (without sleeping) if that is past ``deadline``."""
        ready = self.ready_at()
        if deadline is not None and ready > deadline and ready > self._clock():
            return False
        pause = ready - self._clock()
        if pause > 0:
            self._sleep(pause)
        return True

    def call(self, operation: Callable[[], T], returned_bytes: Callable[[T], int]) -> T:
        """Run one GetRecords attempt in its turn, noting when it started and returned."""
        self.wait()
        started = self._clock()
        size = 0
        try:
            answer = operation()
            size = returned_bytes(answer)
            return answer
        finally:
            self._returned.append(self._clock())
            self._next_call = started + max(self._interval, size / self._bytes_per_second)
