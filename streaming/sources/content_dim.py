"""The content dimension, read fresh by every micro-batch (bounded by ``dimensions.refresh_interval``).

A stream-static join in Spark plans its static side once, so a plain file read would keep the file list
of the query's start. This Python data source is re-executed by each micro-batch instead; each Python
worker keeps the last table it read and re-reads the files when it is older than the refresh interval.
Files may be CSV (with a header) or Parquet, local or on S3; the schema is explicit, never inferred.

Text is fitted to its warehouse column as it is read (:func:`fit_text`), so the engagement rows, the lake
and every warehouse backend carry the same values and a Redshift COPY never meets an over-long title.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition

from streaming.config import DimensionsConfig
from streaming.schema import CONTENT_DIM, CONTENT_DIM_SCHEMA

log = logging.getLogger(__name__)

SOURCE_NAME = "mediapulse_content_dim"

# Per Python worker: (path, format) -> (monotonic load time, pyarrow.Table)
_CACHE: dict[tuple[str, str], tuple[float, Any]] = {}


class DimensionError(RuntimeError):
    """The content dimension cannot be read."""


def arrow_schema() -> Any:
    """:data:`CONTENT_DIM_SCHEMA` as an Arrow schema (all fields nullable: bad rows are filtered later)."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    return pa.schema([field.with_nullable(True) for field in to_arrow_schema(CONTENT_DIM_SCHEMA)])


def _format_of(path: str, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    lowered = path.lower().rstrip("/")
    return "csv" if lowered.endswith((".csv", ".csv.gz")) else "parquet"


def _files(path: str) -> tuple[Any, list[str]]:
    """The file system and the data files at ``path`` (a file, or every file below a folder)."""
    import pyarrow.fs as pafs

    if "://" in path:
        fs, root = pafs.FileSystem.from_uri(path)
    else:
        fs, root = pafs.LocalFileSystem(), os.path.abspath(path)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise DimensionError(f"content dimension not found: {path}")
    if info.type == pafs.FileType.File:
        return fs, [root]
    found = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    files = sorted(
        f.path for f in found if f.type == pafs.FileType.File and not f.base_name.startswith(("_", "."))
    )
    if not files:
        raise DimensionError(f"content dimension folder {path} holds no data files")
    return fs, files


def load_table(path: str, fmt: str) -> Any:
    """Read the dimension with pyarrow (a file or a folder of files), in the declared schema."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    schema = arrow_schema()
    fmt = _format_of(path, fmt)
    fs, files = _files(path)
    tables = []
    for file in files:
        try:
            if fmt == "csv":
                with fs.open_input_stream(file, compression="detect") as stream:
                    options = pacsv.ConvertOptions(column_types=schema, include_columns=schema.names)
                    table = pacsv.read_csv(stream, convert_options=options)
            else:
                table = pq.read_table(file, filesystem=fs, columns=schema.names)
            tables.append(table.select(schema.names).cast(schema))
        except (OSError, ValueError, KeyError, pa.ArrowException) as e:
            first_line = str(e).strip().splitlines()[0][:300]
            raise DimensionError(f"cannot read content dimension file {file} as {fmt}: {first_line}") from e
    return fit_text(pa.concat_tables(tables))


def fit_text(table: Any) -> Any:
    """``table`` with each text attribute cut to its warehouse column width in UTF-8 bytes
    (:func:`sinks.warehouse.sql.varchar_bytes`: ``title`` 1024, ``category`` and ``publisher`` 256,
    ``content_type`` 64), on a character boundary; a row whose key is too long is dropped (no valid event
    can name it: ids are limited to the same width). Each change is logged with its count."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from sinks.warehouse.sql import varchar_bytes

    for name in CONTENT_DIM.key:
        fits = pc.fill_null(pc.less_equal(pc.binary_length(table[name]), varchar_bytes(name)), True)
        dropped = table.num_rows - pc.sum(fits).as_py() if table.num_rows else 0
        if dropped:
            log.warning("content dimension: dropped %d rows whose %s is longer than %d bytes",
                        dropped, name, varchar_bytes(name))  # fmt: skip
            table = table.filter(fits)
    for column in CONTENT_DIM.columns:
        if column.type != "string" or column.name in CONTENT_DIM.key:
            continue
        width = varchar_bytes(column.name)
        values = table[column.name]
        too_long = pc.fill_null(pc.greater(pc.binary_length(values), width), False)
        cut = [v.encode()[:width].decode("utf-8", "ignore") for v in pc.filter(values, too_long).to_pylist()]
        if cut:
            log.warning("content dimension: cut %d %s values to %d bytes", len(cut), column.name, width)
            fitted = pc.replace_with_mask(values.combine_chunks(), too_long.combine_chunks(), pa.array(cut))
            table = table.set_column(table.schema.get_field_index(column.name), column.name, fitted)
    return table


class ContentDimensionSource(DataSource):
    """``spark.read.format("mediapulse_content_dim").option("path", …).load()``."""

    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def schema(self) -> Any:
        return CONTENT_DIM_SCHEMA

    def reader(self, schema: Any) -> DataSourceReader:
        return _ContentReader(dict(self.options))


class _ContentReader(DataSourceReader):
    def __init__(self, options: dict[str, str]) -> None:
        self.path = options["path"]
        self.format = options.get("format", "auto")
        self.refresh_seconds = float(options.get("refresh_seconds", "300"))

    def partitions(self) -> list[InputPartition]:
        return [InputPartition(0)]

    def read(self, partition: InputPartition) -> Iterator[Any]:
        key = (self.path, self.format)
        cached = _CACHE.get(key)
        now = time.monotonic()
        if cached is None or now - cached[0] >= self.refresh_seconds:
            try:
                _CACHE[key] = (now, load_table(self.path, self.format))
            except DimensionError:
                if cached is None:
                    raise
                log.warning("keeping the previous content dimension: %s is unreadable", self.path)
                _CACHE[key] = (now, cached[1])
        yield from _CACHE[key][1].to_batches()


def read_content_dimension(spark: SparkSession, cfg: DimensionsConfig) -> DataFrame:
    """The content dimension as a DataFrame that each micro-batch re-reads (within the refresh bound).

    Fails at once, naming the path, when the dimension cannot be read at start.
    """
    load_table(cfg.content_path, cfg.format)  # fail fast with a clear error, before any query starts
    spark.dataSource.register(ContentDimensionSource)
    return (
        spark.read.format(SOURCE_NAME)
        .option("path", cfg.content_path)
        .option("format", cfg.format)
        .option("refresh_seconds", str(cfg.refresh_interval.total_seconds()))
        .load()
    )
