"""Kinesis records -> Arrow record batches in the connector's schema, with KPL de-aggregation."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from aws_kinesis_agg import MAGIC
from aws_kinesis_agg.deaggregator import iter_deaggregate_records
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import BinaryType, StringType, StructField, StructType, TimestampType

# The schema of the awslabs spark-sql-kinesis-connector ("aws-kinesis"); both implementations yield it.
KINESIS_SCHEMA = StructType(
    [
        StructField("data", BinaryType(), True),
        StructField("streamName", StringType(), True),
        StructField("partitionKey", StringType(), True),
        StructField("sequenceNumber", StringType(), True),
        StructField("approximateArrivalTimestamp", TimestampType(), True),
    ]
)

# The same schema as the Python source's Arrow batches carry it (timestamps in microseconds, UTC).
ARROW_SCHEMA = to_arrow_schema(KINESIS_SCHEMA)
_ARRIVAL_TYPE = ARROW_SCHEMA.field("approximateArrivalTimestamp").type

Record = Mapping[str, Any]  # one entry of GetRecords' "Records", as boto3 returns it
UserRecords = list[tuple[str, bytes]] | None  # (partition key, data) of a KPL record; None: not aggregated


def deaggregate(record: Record) -> UserRecords:
    """The user records packed into ``record`` by the KPL, in sub-sequence order; ``None`` if it is plain.

    The KPL format is a magic prefix, a protobuf ``AggregatedRecord`` and its MD5; a record whose digest
    does not match is an ordinary record that happens to start with the magic bytes (as in the KCL).
    """
    if not bytes(record["Data"][: len(MAGIC)]) == MAGIC:
        return None
    users = []
    for user in iter_deaggregate_records(record, data_format="Boto3"):
        inner = user["kinesis"]
        if not inner.get("aggregated"):
            return None
        users.append((inner["partitionKey"], base64.b64decode(inner["data"])))
    return users


def expand(records: Sequence[Record]) -> list[UserRecords]:
    """For each Kinesis record, its user records if KPL-aggregated, else ``None``."""
    return [deaggregate(record) for record in records]


def row_count(users: UserRecords) -> int:
    return 1 if users is None else len(users)


def to_record_batch(
    stream: str, records: Sequence[Record], expanded: Sequence[UserRecords]
) -> pa.RecordBatch:
    """One Arrow batch, a row per user record; de-aggregated rows share their record's sequence number."""
    if all(users is None for users in expanded):
        data = [record["Data"] for record in records]
        keys = [record["PartitionKey"] for record in records]
        sequences = [record["SequenceNumber"] for record in records]
        arrivals = [record["ApproximateArrivalTimestamp"] for record in records]
    else:
        data, keys, sequences, arrivals = [], [], [], []
        for record, users in zip(records, expanded, strict=True):
            for key, blob in users if users is not None else [(record["PartitionKey"], record["Data"])]:
                data.append(blob)
                keys.append(key)
                sequences.append(record["SequenceNumber"])
                arrivals.append(record["ApproximateArrivalTimestamp"])
    return pa.RecordBatch.from_arrays(
        [
            pa.array(data, pa.binary()),
            pa.array([stream] * len(data), pa.string()),
            pa.array(keys, pa.string()),
            pa.array(sequences, pa.string()),
            _timestamps(arrivals),
        ],
        schema=ARROW_SCHEMA,
    )


def _timestamps(values: list[Any]) -> pa.Array:
    """Arrival times as epoch seconds (how the source's client leaves them) or ``datetime`` objects."""
    if values and isinstance(values[0], int | float):
        micros = pc.round(pc.multiply(pa.array(values, pa.float64()), 1_000_000))
        return micros.cast(pa.int64()).cast(_ARRIVAL_TYPE)
    return pa.array(values, _ARRIVAL_TYPE)
