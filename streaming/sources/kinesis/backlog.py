"""Whether a run of the Python source left a Kinesis backlog: what ``run --available-now`` repeats on.

Spark 4.0 runs a Python stream under ``trigger(availableNow=True)`` as one micro-batch, which the
source bounds by ``max_records_per_trigger`` rows *and* ``max_fetch_time``. A run can therefore end
early for either reason, and the number of rows it read says nothing about the time bound. What says
whether the stream is drained is the stream itself: after a run, each shard is asked (one GetRecords
call) whether a record after the run's end offset is waiting that arrived before the run began.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import Any

from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.streaming.listener import SourceProgress

from streaming.config import KinesisSourceConfig
from streaming.sources.kinesis.client import QUOTA_WINDOW
from streaming.sources.kinesis.offsets import OFFSET_VERSION, KinesisOffset
from streaming.sources.kinesis.python_source import settings_from_options, source_options
from streaming.sources.kinesis.shards import StreamFetcher

logger = logging.getLogger(__name__)


def _end_offset(source: SourceProgress) -> dict[str, Any] | None:
    """The Python source's end offset in a progress report; ``None`` for the connector's.

    Read from the report's JSON: PySpark's ``endOffset`` attribute is the ``str()`` of the parsed offset.
    """
    end = json.loads(source.json).get("endOffset")
    if isinstance(end, str):
        try:
            end = json.loads(end)
        except ValueError:
            return None
    return end if isinstance(end, dict) and end.get("version") == OFFSET_VERSION else None


def behind_latest(cfg: KinesisSourceConfig, query: StreamingQuery) -> bool:
    """Whether any shard holds records the finished run ``query`` left unread that arrived before the
    run's last batch began (``MillisBehindLatest`` > 0, seen from that batch's end offset).

    ``False`` when the run read nothing (it found the stream drained, or cannot move: repeating it would
    not help). Records that arrived after the batch began are left to the next run of the app, so a
    drain of a stream that is written all the time ends. The connector's offsets are not this source's:
    for it, a run is taken to have stopped short when its last batch read ``max_records_per_trigger``
    rows or more (its bound per shard).
    """
    batches = [progress for progress in query.recentProgress if progress.numInputRows]
    if not batches:
        return False
    last = batches[-1]
    end = _end_offset(last.sources[0]) if last.sources else None
    if end is None:
        return last.numInputRows >= cfg.max_records_per_trigger
    began = datetime.fromisoformat(last.timestamp).timestamp()
    # The run's reader may have polled every shard in its last second (a read-ahead polls until the
    # query stops): a second's pause keeps the probe out of that second's GetRecords quota.
    time.sleep(QUOTA_WINDOW)
    fetcher = StreamFetcher(settings_from_options(source_options(cfg)))
    behind = fetcher.backlog(KinesisOffset.from_dict(end, stream=cfg.stream_name), began)
    for shard_id, why in sorted(behind.items()):
        logger.info("kinesis %s: shard %s is behind: %s", cfg.stream_name, shard_id, why)
    return bool(behind)
