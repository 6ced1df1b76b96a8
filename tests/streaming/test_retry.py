"""The shared retry helper: full jitter below a doubling cap, and a call that ends as its last attempt did."""

from __future__ import annotations

import pytest
from tenacity import retry_if_exception_type, retry_if_result

from streaming.retry import FullJitter, retrying


def test_each_wait_is_a_uniform_draw_below_a_doubling_cap() -> None:
    jitter = FullJitter(base_delay=0.1, max_delay=1.0, draw=lambda: 0.5)

    assert [jitter.delay(n) for n in range(6)] == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.5, 0.5])
    assert jitter.delay(10_000) == pytest.approx(0.5)
    waits = [FullJitter(0.1, 0.4).delay(3) for _ in range(200)]
    assert all(0 <= w < 0.4 for w in waits) and len(set(waits)) > 1


def test_attempts_that_run_out_return_the_last_result() -> None:
    sleeps: list[float] = []
    answers = iter([["a", "b"], ["b"], ["b"]])
    calls = retrying(
        attempts=3,
        base_delay=0.1,
        max_delay=1.0,
        retry=retry_if_result(bool),
        sleep=sleeps.append,
        draw=lambda: 1,
    )

    assert calls(lambda: next(answers)) == ["b"]
    assert sleeps == pytest.approx([0.1, 0.2])


def test_attempts_that_run_out_raise_the_last_error_itself() -> None:
    failures = 0

    def fail() -> None:
        nonlocal failures
        failures += 1
        raise TimeoutError(f"attempt {failures}")

    calls = retrying(
        attempts=4,
        base_delay=0,
        max_delay=0,
        retry=retry_if_exception_type(TimeoutError),
        sleep=lambda _: None,
    )
    with pytest.raises(TimeoutError, match="attempt 4"):
        calls(fail)
    assert failures == 4


def test_an_error_not_worth_a_retry_is_raised_at_once() -> None:
    def fail() -> None:
        raise KeyError("no")

    calls = retrying(
        attempts=4, base_delay=0, max_delay=0, retry=retry_if_exception_type(TimeoutError), sleep=pytest.fail
    )
    with pytest.raises(KeyError):
        calls(fail)
