"""``mediapulse quarantine replay``: quarantined records the current contract accepts, sent through the
pipeline again, exactly once.

A replay selects the quarantined records of one reason (a code or its kind) and ingestion-day range that
no earlier replay sent, and re-validates them with the pipeline's own parser (:func:`parse_events`) under
the current ``validation`` config. The records it now accepts are

1. recorded in the replay ledger ``<lake>/quarantine_replays/replay_id=<id>/`` (one row per quarantine
   row, raw text included; complete once Spark's ``_SUCCESS`` marker is there), then
2. written as newline-delimited JSON to ``<source.path>/mediapulse-replay/<id>/part-*.json``: Spark writes
   them to the hidden ``.staging-<id>/`` folder, which the file source does not list, and each file is then
   renamed into place whole, so the ingest query never reads a partial file. Each line is the raw record
   with a leading :data:`~streaming.schema.REPLAY_FIELD` holding its original ``source`` and
   ``ingest_time``, which the parser keeps for records of a replay folder.

The ingest query reads the folder as part of its source (long-running, within a trigger; else at the next
``mediapulse run``), validates the records once more and passes them on like any others: into the event
log, and into the windows unless their window is already closed (then they are counted as late).

Exactly once: the ledger keeps a replayed record out of every later selection; the replay id is derived
from the reason, the range and a hash of the selected records, so re-running a replay that was cut short
finds its own ledger and files and finishes them (:func:`finish_pending`); the file source's log of seen
files reads each file once; and the ingest's event-id deduplication drops a copy arriving within
``dedup.retention``. Records the contract still refuses stay in the quarantine as they are (nothing is
deleted); a replay reports them by their current reasons. ``mediapulse quarantine stats`` shows how many
records of each day and reason were replayed.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import date

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from streaming.config import AppConfig, FilesSourceConfig, ValidationConfig
from streaming.parse import parse_events
from streaming.schema import (
    EVENT_FIELDS,
    QUARANTINE_LOG_SCHEMA,
    RAW_SCHEMA,
    REASON_CODES,
    REPLAY_FIELD,
    REPLAY_FOLDER,
    REPLAYED_KEY,
    REPLAYED_SCHEMA,
)
from streaming.storage import hadoop_path, path_exists, write_text

log = logging.getLogger(__name__)

LEDGER = "quarantine_replays"
SUCCESS = "_SUCCESS"

# A replay line starts with the reference this module writes; a record replayed before (and quarantined
# again) has it already, and it is replaced rather than repeated (a repeated key is malformed JSON).
_REFERENCE_PREFIX = (
    r'^\s*\{"' + REPLAY_FIELD + r'":\{"replay":"[^"]*",'
    r'"source":"(?:[^"\\]|\\.)*","ingest_time_us":-?[0-9]+\},'
)


class ReplayError(ValueError):
    """A replay cannot be done as asked (its usage problems are raised as ``QuarantineError``)."""


def reason_codes() -> frozenset[str]:
    """Every reason code the parser can give (``<name>`` expanded to each contract field)."""
    codes = set()
    for code in REASON_CODES:
        if "<name>" in code:
            codes.update(code.replace("<name>", f.name) for f in EVENT_FIELDS)
        else:
            codes.add(code)
    return frozenset(codes)


def is_known_reason(reason: str) -> bool:
    """Whether ``reason`` is a reason code or the kind of one (``missing_field``)."""
    codes = reason_codes()
    return reason in codes or any(code.startswith(f"{reason}:") for code in codes)


@dataclass(frozen=True)
class Selection:
    """Quarantined records of one reason (a code or its kind) and ingestion days [start, end)."""

    reason: str
    start: date | None = None
    end: date | None = None

    def matches(self) -> F.Column:
        reason = self.reason
        condition = F.exists("reasons", lambda r: (r == reason) | r.startswith(f"{reason}:"))
        if self.start is not None:
            condition &= F.col("ingest_date") >= F.lit(self.start)
        if self.end is not None:
            condition &= F.col("ingest_date") < F.lit(self.end)
        return condition

    def replay_id(self, records: int, content_hash: str) -> str:
        """``<reason>_<from>_<to>_<hash>``: the same selection of the same records, the same id."""
        slug = re.sub(r"[^a-z0-9_]+", "-", self.reason.lower())
        span = f"{self.start or 'start'}_{self.end or 'end'}"
        digest = hashlib.sha256(f"{self.reason}|{span}|{records}|{content_hash}".encode()).hexdigest()
        return f"{slug}_{span}_{digest[:12]}"


@dataclass(frozen=True)
class ReplayResult:
    selected: int  # open (never replayed) records of the selection
    already_replayed: int  # records of the selection an earlier replay sent
    replayed: int  # records the current contract accepts: sent (or, dry, to be sent)
    still_invalid: dict[str, int] = field(default_factory=dict)  # the others, by current reason code
    replay_id: str | None = None
    path: str | None = None  # the replay folder the ingest reads


def replay_root(source: FilesSourceConfig) -> str:
    return f"{source.path.rstrip('/')}/{REPLAY_FOLDER}"


def ledger_root(lake_path: str) -> str:
    return f"{lake_path.rstrip('/')}/{LEDGER}"


def replay_quarantined(
    spark: SparkSession, cfg: AppConfig, selection: Selection, *, dry_run: bool = False
) -> ReplayResult:
    """Re-validate the selection's open records under ``cfg.validation`` and send the valid ones through
    the pipeline once (see the module docstring); with ``dry_run``, only count."""
    if not isinstance(cfg.source, FilesSourceConfig):
        raise ReplayError("replay writes the records for the files source to read; source.kind is kinesis")
    ledger, root = ledger_root(cfg.lake.path), replay_root(cfg.source)
    if not dry_run:
        finish_pending(spark, ledger, root)
    quarantine = _read_quarantine(spark, cfg.lake.path).filter(selection.matches())
    keyed = quarantine.withColumn("raw_sha256", F.sha2("raw", 256))
    replayed = _read_ledger(spark, ledger).select(*REPLAYED_KEY).distinct()
    keyed = keyed.join(replayed.withColumn("_replayed", F.lit(True)), list(REPLAYED_KEY), "left")
    keyed.persist()
    try:
        already = keyed.filter(F.col("_replayed").isNotNull()).count()
        open_rows = keyed.filter(F.col("_replayed").isNull()).drop("_replayed")
        checked = _revalidate(open_rows, cfg.validation)
        checked.persist()
        try:
            return _replay_checked(spark, checked, selection, already, ledger, root, dry_run)
        finally:
            checked.unpersist()
    finally:
        keyed.unpersist()


def _replay_checked(
    spark: SparkSession,
    checked: DataFrame,
    selection: Selection,
    already: int,
    ledger: str,
    root: str,
    dry_run: bool,
) -> ReplayResult:
    valid = checked.filter(F.size("current_reasons") == 0)
    totals = checked.agg(
        F.count(F.lit(1)).alias("selected"),
        F.count_if(F.size("current_reasons") == 0).alias("valid"),
        # Order-free and exact: the same records give the same hash, whatever their partitioning.
        F.sum(F.when(F.size("current_reasons") == 0, F.xxhash64("_rid").cast("decimal(38,0)"))).alias("hash"),
    ).first()
    still_invalid = {
        r.reason: int(r["count"])
        for r in checked.filter(F.size("current_reasons") > 0)
        .select(F.explode("current_reasons").alias("reason"))
        .groupBy("reason")
        .count()
        .collect()
    }
    selected, count = int(totals["selected"]), int(totals["valid"])
    if count == 0:
        return ReplayResult(selected, already, 0, still_invalid)
    replay_id = selection.replay_id(count, str(totals["hash"]))
    result = ReplayResult(selected, already, count, still_invalid, replay_id, f"{root}/{replay_id}")
    if dry_run:
        return result
    rows = valid.select(
        *[name for name in REPLAYED_SCHEMA.fieldNames() if name != "replayed_at"],
        F.current_timestamp().alias("replayed_at"),
    )
    rows.write.mode("overwrite").parquet(f"{ledger}/replay_id={replay_id}")
    _write_replay_files(spark, ledger, root, replay_id)
    log.info("replay %s: %d records written to %s/%s", replay_id, count, root, replay_id)
    return result


def _read_quarantine(spark: SparkSession, lake_path: str) -> DataFrame:
    return spark.read.schema(QUARANTINE_LOG_SCHEMA).parquet(f"{lake_path.rstrip('/')}/quarantine")


def _complete_replays(spark: SparkSession, ledger: str, *, clean: bool = False) -> list[str]:
    """The replay ids whose ledger rows were written completely; with ``clean``, the folders of ledger
    writes that were cut short are deleted (their records were never sent: they are selected again)."""
    resolved, fs = hadoop_path(spark, ledger)
    if not fs.exists(resolved):
        return []
    ids = []
    for status in fs.listStatus(resolved):
        name = status.getPath().getName()
        if status.isDirectory() and name.startswith("replay_id="):
            if fs.exists(spark._jvm.org.apache.hadoop.fs.Path(status.getPath(), SUCCESS)):
                ids.append(name.removeprefix("replay_id="))
            elif clean:
                fs.delete(status.getPath(), True)
    return ids


def _read_ledger(spark: SparkSession, ledger: str, replay_id: str | None = None) -> DataFrame:
    ids = [replay_id] if replay_id is not None else _complete_replays(spark, ledger)
    if not ids:
        return spark.createDataFrame([], REPLAYED_SCHEMA)
    return spark.read.schema(REPLAYED_SCHEMA).parquet(*[f"{ledger}/replay_id={i}" for i in ids])


def _revalidate(rows: DataFrame, validation: ValidationConfig) -> DataFrame:
    """Quarantine rows with their reasons under the current contract (``current_reasons``, empty: valid)
    and their event id, from the pipeline's parser. ``_rid`` names one quarantined record: it stands in
    for the source while parsing, so no stored source can be taken for a replay folder's."""
    identity = F.sha2(F.concat_ws("\u0000", *[F.col(c).cast("string") for c in REPLAYED_KEY]), 256)
    rows = rows.withColumn("_rid", identity)
    records = rows.select(F.col("raw").alias("value"), F.col("_rid").alias("source"), "ingest_time")
    records = records.dropDuplicates(["source"]).select(*RAW_SCHEMA.fieldNames())
    parsed = parse_events(
        records, validation.max_future_skew, validation.event_types, validation.platforms
    ).select(F.col("source").alias("_rid"), "event_id", F.col("reasons").alias("current_reasons"))
    return rows.join(parsed, "_rid")


def finish_pending(spark: SparkSession, ledger: str, root: str) -> list[str]:
    """Write the files of every replay whose ledger is complete but whose files are not (a replay cut
    short); returns their ids."""
    finished = []
    for replay_id in _complete_replays(spark, ledger, clean=True):
        if not path_exists(spark, f"{root}/{replay_id}/{SUCCESS}"):
            _write_replay_files(spark, ledger, root, replay_id)
            finished.append(replay_id)
    return finished


def replay_lines(rows: DataFrame, replay_id: str) -> DataFrame:
    """Ledger rows -> the replay file's lines (``value``): each record once, led by its reference."""
    reference = F.to_json(
        F.struct(
            F.lit(replay_id).alias("replay"),
            F.col("source"),
            F.unix_micros("ingest_time").alias("ingest_time_us"),
        )
    )
    record = F.regexp_replace("raw", _REFERENCE_PREFIX, "{")
    body = F.regexp_replace(record, r"^\s*\{", "")  # a valid record is an object with a field
    line = F.concat(F.lit(f'{{"{REPLAY_FIELD}":'), reference, F.lit(","), body)
    return rows.dropDuplicates(["source", "ingest_time", "raw"]).select(line.alias("value"))


def _write_replay_files(spark: SparkSession, ledger: str, root: str, replay_id: str) -> None:
    """Stage the replay's lines in a hidden folder, then rename each whole file into the replay folder."""
    staging = f"{root}/.staging-{replay_id}"
    target = f"{root}/{replay_id}"
    staged, fs = hadoop_path(spark, staging)
    if not fs.exists(hadoop_path(spark, f"{staging}/{SUCCESS}")[0]):
        lines = replay_lines(_read_ledger(spark, ledger, replay_id), replay_id)
        lines.write.mode("overwrite").text(staging)
    destination, _ = hadoop_path(spark, target)
    fs.mkdirs(destination)
    for status in fs.listStatus(staged):
        name = status.getPath().getName()
        if name.startswith("part-"):
            part = name.split("-")[1]
            final = hadoop_path(spark, f"{target}/part-{part}.json")[0]
            if fs.exists(final):  # a record file is never replaced: the ingest may have read it
                raise ReplayError(f"replay {replay_id}: {final} exists but was not staged last")
            if not fs.rename(status.getPath(), final):
                raise ReplayError(f"replay {replay_id}: could not move {status.getPath()} to {final}")
    write_text(spark, f"{target}/{SUCCESS}", "")
    fs.delete(staged, True)
