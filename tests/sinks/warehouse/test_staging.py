"""Reading staged files where they lie."""

from __future__ import annotations

from typing import Any

from sinks.warehouse.staging import local_path, s3_filesystem


def test_s3_filesystem_follows_the_endpoint_override(aws_endpoint: str, s3_client: Any, bucket: str) -> None:
    s3_client.put_object(Bucket=bucket, Key="k/x.txt", Body=b"hello")
    env = {"AWS_ENDPOINT_URL_S3": aws_endpoint, "AWS_REGION": "us-east-1"}

    with s3_filesystem(env).open_input_stream(f"{bucket}/k/x.txt") as f:
        assert f.read() == b"hello"


def test_file_urls_become_local_paths_and_plain_paths_stay() -> None:
    assert local_path("file:///tmp/stage/batch_id=1/a%20b.parquet") == "/tmp/stage/batch_id=1/a b.parquet"
    assert local_path("/tmp/stage/part-0.parquet") == "/tmp/stage/part-0.parquet"
    assert local_path("s3://bucket/stage/part-0.parquet") == "s3://bucket/stage/part-0.parquet"
