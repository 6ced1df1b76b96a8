"""A Kinesis client for ``botocore.stub.Stubber``: answers come from the test, never from a network."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config


def stubbed_client() -> Any:
    """A Kinesis client with fake credentials and botocore's own retries off."""
    return boto3.session.Session().client(
        "kinesis",
        region_name="us-east-1",
        aws_access_key_id="stub",
        aws_secret_access_key="stub",
        config=Config(retries={"total_max_attempts": 1}),
    )
