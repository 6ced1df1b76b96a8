"""Stage 4: attach content attributes to events (left join: unknown content is kept, flagged)."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from streaming.schema import ENGAGEMENT

# The content attributes each engagement row carries.
DIMENSION_COLUMNS = ENGAGEMENT.names("attribute")


def latest_content(content: DataFrame) -> DataFrame:
    """One row per content_id (the most recently published one wins; ties by title)."""
    newest = Window.partitionBy("content_id").orderBy(
        F.col("published_at").desc_nulls_last(), F.col("title").desc_nulls_last()
    )
    return (
        content.filter(F.col("content_id").isNotNull())
        .withColumn("_rank", F.row_number().over(newest))
        .filter("_rank = 1")
        .select("content_id", *DIMENSION_COLUMNS)
    )


def enrich_with_content(events: DataFrame, content: DataFrame) -> DataFrame:
    """Left-join events with the (small, broadcast) content dimension; adds ``content_known``."""
    dimension = latest_content(content).withColumn("content_known", F.lit(True))
    return events.join(F.broadcast(dimension), "content_id", "left").withColumn(
        "content_known", F.coalesce(F.col("content_known"), F.lit(False))
    )
