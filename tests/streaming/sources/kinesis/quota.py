"""Counting GetRecords calls the way Kinesis applies its per-shard read quota."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

# The documented quota: each shard serves at most 5 GetRecords calls per second, shared by every consumer
# that polls it (https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html).
GET_RECORDS_QUOTA = 5


def busiest_second(calls: Iterable[float | tuple[float, float]]) -> int:
    """The most calls that any one-second window ``[t, t + 1 s)`` holds.

    A call is the moment the server logged it, or the span ``(sent, answered)`` seen by the caller: the
    server counts it at some moment of that span, and this takes the least favourable one for each call,
    so a window holds every call whose span reaches into it.
    """
    spans = [(c, c) if isinstance(c, float | int) else c for c in calls]
    starts = sorted(start for start, _ in spans)
    ends = sorted(end for _, end in spans)
    # The busiest window can be slid right until its left edge meets the end of a call it holds.
    return max(
        (bisect_left(starts, t + 1.0) - bisect_left(ends, t) for t in ends),
        default=0,
    )
