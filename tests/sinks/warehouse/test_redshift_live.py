"""Against a real Redshift cluster or serverless workgroup; skipped unless these are set:

* ``MEDIAPULSE_LIVE_REDSHIFT_URL``: a full ``redshift://`` warehouse URL with ``iam_role=`` and an IAM or
  secret login (see docs/redshift.md); its ``schema=`` is replaced by a fresh schema, dropped afterwards;
* ``MEDIAPULSE_LIVE_S3_STAGING``: ``s3://bucket/prefix`` the role may read and this process may write.

AWS credentials come from the usual chain. This is the only test of COPY … FORMAT AS PARQUET MANIFEST from
S3, of the Redshift DDL running for real, of SYS_LOAD_ERROR_DETAIL and of check() on pg_table_def.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from sinks.warehouse.admin import sync_dimensions
from sinks.warehouse.analytics import Slice
from sinks.warehouse.base import COLUMN_NAMES, StagedBatch, WarehouseError
from sinks.warehouse.redshift import RedshiftWarehouse
from streaming.config import WarehouseConfig
from tests.sinks.warehouse.data import apply_batches, arrow_table, dim_rows, dim_table, make_rows

URL = os.environ.get("MEDIAPULSE_LIVE_REDSHIFT_URL")
STAGING = os.environ.get("MEDIAPULSE_LIVE_S3_STAGING")

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not (URL and STAGING), reason="MEDIAPULSE_LIVE_REDSHIFT_URL / _S3_STAGING not set"),
]


@pytest.fixture(autouse=True)
def _fake_aws_credentials() -> None:
    """Overrides the package fixture of the same name: this test uses the real credential chain."""


@pytest.fixture
def live() -> Iterator[RedshiftWarehouse]:
    assert URL
    parsed = urlparse(URL)
    params = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    params["schema"] = f"mediapulse_live_{uuid.uuid4().hex[:8]}"
    url = urlunparse(parsed._replace(query=urlencode(params, safe=":/")))
    wh = RedshiftWarehouse.from_config(WarehouseConfig(url=url))
    try:
        yield wh
    finally:
        wh._run(
            "drop test schema", lambda cur: cur.execute(f"DROP SCHEMA IF EXISTS {params['schema']} CASCADE")
        )
        wh.close()


def _stage(s3: Any, batch_id: int, table: Any) -> StagedBatch:
    assert STAGING
    bucket, _, prefix = STAGING.removeprefix("s3://").partition("/")
    key_prefix = f"{prefix.rstrip('/')}/live-{uuid.uuid4().hex[:8]}/batch_id={batch_id}"
    sink = io.BytesIO()
    pq.write_table(table, sink)
    key = f"{key_prefix}/part-00000.snappy.parquet"
    s3.put_object(Bucket=bucket, Key=key, Body=sink.getvalue())
    return StagedBatch(
        "engagement", batch_id, f"s3://{bucket}/{key_prefix}", (f"s3://{bucket}/{key}",), table.num_rows
    )


def test_live_redshift_end_to_end(live: RedshiftWarehouse, tmp_path: Path) -> None:
    import boto3

    s3 = boto3.client("s3")
    live.init()
    live.init()
    assert live.check() == []

    rows = make_rows(1, windows=3)
    assert live.load_batch(_stage(s3, 1, arrow_table(rows))) is True
    assert live.load_batch(_stage(s3, 1, arrow_table(rows))) is False
    expected = apply_batches([rows])
    got = live.fetch(f"SELECT {', '.join(COLUMN_NAMES)} FROM {live.table}")
    assert len(got) == len(expected)
    impressions = COLUMN_NAMES.index("impressions")
    assert sum(r[impressions] for r in got) == sum(r["impressions"] for r in expected.values())
    assert live.committed("engagement") == [1]
    assert live.top(Slice(), "ctr", 3).rows

    with pytest.raises(WarehouseError, match="COPY of engagement batch 2"):
        live.load_batch(_stage(s3, 2, arrow_table(rows).drop_columns(["ctr"])))
    assert live.committed("engagement") == [1]

    dims = tmp_path / "content.csv"
    pacsv.write_csv(dim_table(dim_rows(3)), dims)
    assert sync_dimensions(live, str(dims)) == 3
