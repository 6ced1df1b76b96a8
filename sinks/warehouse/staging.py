"""A staged batch's Parquet files, read where they lie (a local path, ``file://`` or ``s3://``) as Arrow
record batches in the warehouse's types; the S3 URL helpers the backends share."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sinks.warehouse.base import COLUMN_NAMES, WarehouseError

_ARROW_BATCH_ROWS = 65_536


def _s3_endpoint(environ: Mapping[str, str]) -> str | None:
    return environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or None


def s3_filesystem(environ: Mapping[str, str] | None = None) -> pafs.S3FileSystem:
    """pyarrow's S3 client with the default AWS credential chain; honours ``AWS_ENDPOINT_URL[_S3]``."""

    env = os.environ if environ is None else environ
    options: dict[str, Any] = {}
    endpoint = _s3_endpoint(env)
    if endpoint:
        parsed = urlparse(endpoint)
        options["endpoint_override"] = parsed.netloc or parsed.path
        options["scheme"] = parsed.scheme or "https"
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        options["region"] = region
    return pafs.S3FileSystem(**options)


def is_s3_url(url: str) -> bool:
    return url.startswith(("s3://", "s3a://", "s3n://"))


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` (also ``s3a://``, ``s3n://``) → ``(bucket, key)``."""
    parsed = urlparse(url)
    if parsed.scheme not in ("s3", "s3a", "s3n") or not parsed.netloc:
        raise WarehouseError(f"not an S3 URL: {url!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def local_path(uri: str) -> str:
    """A ``file://`` URL as a local path; a plain path (or another scheme) unchanged."""
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri


def _open_parquet(uri: str, s3: pafs.FileSystem | None) -> pq.ParquetFile:

    parsed = urlparse(uri)
    if parsed.scheme in ("s3", "s3a", "s3n"):
        bucket, key = split_s3_url(uri)
        fs = s3 if s3 is not None else s3_filesystem()
        return pq.ParquetFile(fs.open_input_file(f"{bucket}/{key}"))
    if parsed.scheme == "file":
        return pq.ParquetFile(local_path(uri))
    if parsed.scheme:
        raise WarehouseError(f"cannot read staged file {uri!r}: scheme {parsed.scheme!r} is not supported")
    return pq.ParquetFile(uri)


def to_warehouse_types(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Timestamps as naive UTC (the warehouse columns are TIMESTAMP without time zone)."""

    columns = []
    for column in batch.columns:
        if pa.types.is_timestamp(column.type) and column.type.tz is not None:
            column = column.cast(pa.timestamp(column.type.unit))
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def iter_record_batches(
    files: Iterable[str],
    columns: tuple[str, ...] = COLUMN_NAMES,
    s3: pafs.FileSystem | None = None,
    batch_rows: int = _ARROW_BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """Stream the staged Parquet files as Arrow record batches holding ``columns`` in that order."""

    for uri in files:
        try:
            parquet = _open_parquet(uri, s3)
            missing = [c for c in columns if c not in parquet.schema_arrow.names]
            if missing:
                raise WarehouseError(f"staged file {uri} lacks column(s) {', '.join(missing)}")
            for batch in parquet.iter_batches(batch_size=batch_rows, columns=list(columns)):
                yield to_warehouse_types(batch.select(list(columns)))
        except (OSError, pa.ArrowException) as e:
            raise WarehouseError(f"cannot read staged file {uri}: {e}") from e
