"""The named failures of the Kinesis source. Each message names the stream (and shard) it is about."""

from __future__ import annotations


class KinesisSourceError(RuntimeError):
    """The Kinesis source cannot go on; the message says why and what to change."""


class StreamNotFoundError(KinesisSourceError):
    """The configured stream does not exist (or is not visible with these credentials and region)."""

    def __init__(self, stream: str, detail: str = "") -> None:
        self.stream = stream
        message = f"Kinesis stream {stream!r} does not exist"
        super().__init__(f"{message}: {detail}" if detail else message)


class KinesisThrottledError(KinesisSourceError):
    """Kinesis kept throttling a call after every retry the configuration allows."""


class KinesisDataLossError(KinesisSourceError):
    """Records expired from the stream (or a shard vanished) before the source read them."""


class ImplementationMismatchError(KinesisSourceError):
    """A checkpoint written by one Kinesis source implementation was handed to the other."""
