"""Retries with capped exponential backoff and full jitter, on tenacity: the one helper behind the Kinesis
reader's calls and the producer's PutRecords (the warehouse's load protocol keeps its own outage budget).

Full jitter: the wait after the n-th failed attempt is drawn uniformly from ``0`` to
``min(max_delay, base_delay * 2 ** (n - 1))``, so clients that failed together do not retry together.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenacity import RetryCallState, Retrying, stop_after_attempt
from tenacity.retry import RetryBaseT

# Beyond 2**64 times any base delay the cap is max_delay anyway; the bound keeps the power finite.
_MAX_EXPONENT = 64


@dataclass(frozen=True)
class FullJitter:
    """A tenacity wait: ``draw() * min(max_delay, base_delay * 2 ** (n - 1))`` after the n-th failed
    attempt, ``draw`` uniform on [0, 1) (injectable, so tests can pin it)."""

    base_delay: float
    max_delay: float
    draw: Callable[[], float] = random.random

    def delay(self, retry: int) -> float:
        """The wait before retry number ``retry`` (0 for the first retry)."""
        return self.draw() * min(self.max_delay, self.base_delay * 2.0 ** min(retry, _MAX_EXPONENT))

    def __call__(self, state: RetryCallState) -> float:
        return self.delay(state.attempt_number - 1)


def _last_outcome(state: RetryCallState) -> Any:
    assert state.outcome is not None
    return state.outcome.result()  # the last result, or the last exception raised again


def retrying(
    *,
    attempts: int,
    base_delay: float,
    max_delay: float,
    retry: RetryBaseT,
    sleep: Callable[[float], None] = time.sleep,
    draw: Callable[[], float] = random.random,
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> Retrying:
    """At most ``attempts`` attempts while ``retry`` (a tenacity retry condition) says so, waiting
    :class:`FullJitter` in between. When the attempts run out, the call ends as its last attempt did:
    with that attempt's result, or by raising its exception (never tenacity's ``RetryError``)."""
    return Retrying(
        retry=retry,
        stop=stop_after_attempt(attempts),
        wait=FullJitter(base_delay, max_delay, draw),
        sleep=sleep,
        before_sleep=before_sleep,
        retry_error_callback=_last_outcome,
    )
