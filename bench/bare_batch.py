"""The bare Spark batch job the pipeline is measured against: read, aggregate, write Parquet; nothing else.

    .venv/bin/python bench/bare_batch.py SOURCE_DIR OUT_DIR [--set KEY=VALUE ...]

``spark.read.json`` with an explicit schema of the contract's fields (no validation, quarantine,
deduplication, enrichment, state or ledger), event time decoded from RFC 3339 or epoch milliseconds,
then the pipeline's own window aggregates (:func:`streaming.aggregate.aggregate_engagement` and
:func:`~streaming.aggregate.add_rates`, window from the config; the dimension columns are null) written
as Parquet. The session is the app's (:func:`streaming.session.build_session` with the config's
``spark`` section), so both jobs get the same cores and shuffle partitions; ``--set`` takes the same
overrides as ``mediapulse run``.
"""

from __future__ import annotations

import argparse
import sys

from pyspark.sql import functions as F
from pyspark.sql import types as T

from streaming.aggregate import add_rates, aggregate_engagement
from streaming.config import load_config
from streaming.schema import ENGAGEMENT, EVENT_FIELDS
from streaming.session import build_session

# The contract's fields as Spark's JSON reader takes them: integers as long, everything else as text.
READ_SCHEMA = T.StructType(
    [
        T.StructField(f.name, T.LongType() if f.kind in ("watch_ms", "integer") else T.StringType())
        for f in EVENT_FIELDS
    ]
)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", help="folder of newline-delimited JSON files (plain or .gz, nested)")
    parser.add_argument("out", help="Parquet output folder (overwritten)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    cfg = load_config(overrides=args.overrides)
    spark = build_session(cfg.spark, "mediapulse-bare-batch")
    try:
        text_time = F.try_to_timestamp(F.col("event_time"))
        millis_time = F.timestamp_millis(F.expr("try_cast(event_time AS BIGINT)"))
        # no dimension join: its attribute columns are null
        attributes = [c for c in ENGAGEMENT.columns if c.name in ENGAGEMENT.names("attribute")]
        no_dimension = {c.name: F.lit(None).cast(c.type) for c in attributes}
        events = (
            spark.read.schema(READ_SCHEMA)
            .option("recursiveFileLookup", "true")
            .json(args.source)
            .withColumn("event_time", F.coalesce(text_time, millis_time))
            .withColumn("platform", F.lower("platform"))
            .withColumns(no_dimension)
        )
        (
            aggregate_engagement(events, cfg.engagement.window, cfg.engagement.unique_viewers_lg_k)
            .transform(add_rates)
            .write.mode("overwrite")
            .parquet(args.out)
        )
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
