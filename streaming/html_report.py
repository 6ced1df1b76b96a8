"""``mediapulse report``: one self-contained HTML file of charts, for analysts and operators.

Every warehouse number is a row of a view read through :meth:`sinks.warehouse.base.Warehouse.read_view`
(the statements are in :mod:`sinks.warehouse.analytics`, rendered for each backend); the health charts
read the JSON-lines file of :mod:`sinks.metrics`. Nothing here computes a metric: Python only reshapes
rows for the charts, buckets the health figures in time and formats numbers for the headline tiles.

The charts are Vega-Lite specifications built with Altair. The Vega, Vega-Lite and Vega-Embed JavaScript
comes from the ``vl-convert-python`` wheel and is inlined into the page, so the file opens offline; the
same wheel renders the optional PNGs without a browser. See docs/analysts.md ("The HTML report").
"""

from __future__ import annotations

import html
import json
import logging
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import altair as alt

from sinks.metrics import BatchFigures
from sinks.warehouse import analytics
from sinks.warehouse.analytics import Slice
from sinks.warehouse.base import Warehouse

log = logging.getLogger(__name__)

DEFAULT_SPAN = timedelta(hours=24)
DASH = "\u2013"  # a figure the report does not have
RANKED_PER_SLOT = 10
TRENDING = 10
MIN_VOLUME = 100  # impressions a slot's content needs to be judged, as `rank`'s default
HEALTH_BUCKETS = 72  # at most this many bars over the health range
TOP_REASONS = 8  # quarantine reasons drawn by name; the rest as "other"
VEGALITE_VERSION = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])

PLATFORM_ALL = "all platforms"  # the "(all)" level of the daily rollup, as the chart names it


# ------------------------------------------------------------------------------------------ the data


@dataclass(frozen=True)
class Ranges:
    """What the report covers: windows starting in ``windows`` (naive UTC, the views' time), and health
    batches that started in ``health`` (aware UTC); None: open."""

    windows: tuple[datetime | None, datetime | None]
    health: tuple[datetime | None, datetime | None]
    note: str


@dataclass
class ReportData:
    """Everything the report shows, as read: view rows as dicts, health batches as written."""

    generated: datetime
    source: str
    ranges: Ranges
    progress: dict[str, Any]
    totals: dict[str, Any]
    traffic: list[dict[str, Any]]
    mix: list[dict[str, Any]]
    ranking: list[dict[str, Any]]
    trending: list[dict[str, Any]]
    viewers: list[dict[str, Any]]
    health: list[BatchFigures] = field(default_factory=list)
    metrics_path: str | None = None


def choose_ranges(
    since: timedelta | None,
    start: datetime | None,
    end: datetime | None,
    *,
    newest_window_end: datetime | None,
    newest_batch: datetime | None,
    now: datetime,
) -> Ranges:
    """The report's ranges from the arguments (aware times), or, without any, the last :data:`DEFAULT_SPAN`
    of each source: windows up to the warehouse's newest, health batches up to the newest batch."""

    def naive(moment: datetime | None) -> datetime | None:
        return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None)

    if since is not None:
        return Ranges((naive(now - since), None), (now - since, None), f"the last {_span_text(since)}")
    if start is not None or end is not None:
        return Ranges((naive(start), naive(end)), (start, end), f"{_when(start)} to {_when(end)}")
    windows_end = newest_window_end
    health_end = newest_batch
    return Ranges(
        (None if windows_end is None else windows_end - DEFAULT_SPAN, None),
        (None if health_end is None else health_end - DEFAULT_SPAN, None),
        f"the last {_span_text(DEFAULT_SPAN)} of data",
    )


def read_data(
    warehouse: Warehouse,
    arguments: tuple[timedelta | None, datetime | None, datetime | None],
    health: Sequence[BatchFigures],
    *,
    source: str,
    metrics_path: str | None,
    now: datetime,
) -> ReportData:
    """Read every section from the views. ``arguments`` are ``--since``, ``--from`` and ``--to`` (see
    :func:`choose_ranges`); ``health`` is every batch of the metrics file, kept here when in range."""
    names = warehouse.tables.names()  # type: ignore[attr-defined]
    progress = _one(warehouse.read_view(analytics.progress_query(names)))
    newest = _parse(progress["newest_window_end"])
    ranges = choose_ranges(
        *arguments,
        newest_window_end=None if newest is None else newest.replace(tzinfo=None),
        newest_batch=max((b.time for b in health), default=None),
        now=now,
    )
    start, end = ranges.windows
    where = Slice(start=start, end=end)
    h_start, h_end = ranges.health
    return ReportData(
        generated=now,
        source=source,
        ranges=ranges,
        progress=progress,
        totals=_one(warehouse.read_view(analytics.totals_query(names, where))),
        traffic=_rows(warehouse.read_view(analytics.traffic_query(names, where))),
        mix=_rows(warehouse.read_view(analytics.mix_query(names, where))),
        ranking=_rows(
            warehouse.read_view(analytics.slot_ranking_query(names, where, RANKED_PER_SLOT, MIN_VOLUME))
        ),
        trending=_rows(warehouse.read_view(analytics.trending_query(names, where, TRENDING))),
        viewers=_rows(warehouse.read_view(analytics.daily_viewers_query(names, where))),
        health=[
            b for b in health if (h_start is None or b.time >= h_start) and (h_end is None or b.time < h_end)
        ],
        metrics_path=metrics_path,
    )


def _plain(value: Any) -> Any:
    """A view's value as JSON takes it: numbers as numbers, times as ISO 8601 in UTC."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _rows(report: analytics.Report) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in r.items()} for r in report.records()]


def _one(report: analytics.Report) -> dict[str, Any]:
    rows = _rows(report)
    return rows[0] if rows else dict.fromkeys(report.columns)


def _iso(moment: datetime) -> str:
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.isoformat().replace("+00:00", "Z")


def _parse(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


# ------------------------------------------------------------------------------------------ formatting


def _when(moment: datetime | str | None) -> str:
    if moment is None:
        return "now"
    if isinstance(moment, str):
        moment = _parse(moment)
    assert moment is not None
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.strftime("%Y-%m-%d %H:%M UTC")


def _span_text(span: timedelta) -> str:
    seconds = span.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0 and (unit != "d" or seconds > 86400):
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:.0f} s"


def _duration_text(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= 2 * size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:,.0f} s"


def _count(value: Any) -> str:
    return DASH if value is None else f"{int(value):,}"


def _percent(value: Any) -> str:
    return DASH if value is None else f"{float(value):.1%}"


def _label(moment: str) -> str:
    """A window or batch time (ISO 8601, UTC) as a tooltip shows it."""
    parsed = _parse(moment)
    assert parsed is not None
    return parsed.strftime("%d %b %H:%M UTC")


# ------------------------------------------------------------------------------------------ charts


@dataclass(frozen=True)
class Chart:
    """One chart of the report: its element id, heading, what it shows, and its Vega-Lite spec (None when
    the range has nothing to draw, with ``empty`` saying so)."""

    id: str
    title: str
    about: str
    spec: dict[str, Any] | None
    empty: str = "nothing in this range"
    wide: bool = False


def _data(rows: Iterable[dict[str, Any]]) -> alt.Data:
    return alt.Data(values=list(rows))


def _finish(chart: alt.TopLevelMixin, height: int) -> dict[str, Any]:
    spec = chart.properties(width="container", height=height).to_dict(validate=True)
    spec["autosize"] = {"type": "fit-x", "contains": "padding"}
    return spec


def _time_axis(field_name: str) -> alt.X:
    """A UTC time axis on a 24-hour clock; a tick at midnight shows the date."""
    return alt.X(
        f"{field_name}:T",
        title=None,
        scale=alt.Scale(type="utc"),
        axis=alt.Axis(labelAngle=0, labelOverlap=True, tickCount=6, labelExpr=_TIME_LABEL),
    )


_TIME_LABEL = (
    "utcFormat(datum.value, utcseconds(datum.value) ? '%H:%M:%S'"
    " : (utchours(datum.value) || utcminutes(datum.value)) ? '%H:%M' : '%d %b')"
)


def traffic_chart(rows: list[dict[str, Any]]) -> Chart:
    about = "Impressions per event-time window, by platform (v_engagement). Hollow points: open windows."
    if not rows:
        return Chart("traffic", "Traffic by platform", about, None, wide=True)
    values = [{**r, "window": _label(r["window_start"]), "state": _state(r["is_final"])} for r in rows]
    base = alt.Chart(_data(values))
    y = alt.Y("impressions:Q", title="impressions per window")
    tooltip = [
        alt.Tooltip("window:N", title="window"),
        alt.Tooltip("platform:N"),
        alt.Tooltip("impressions:Q", format=","),
        alt.Tooltip("clicks:Q", format=","),
        alt.Tooltip("play_starts:Q", title="plays", format=","),
        alt.Tooltip("state:N"),
    ]
    color = alt.Color("platform:N", legend=alt.Legend(orient="bottom", title=None))
    line = base.mark_line().encode(x=_time_axis("window_start"), y=y, color=color)
    points = base.mark_point(size=28).encode(
        x=_time_axis("window_start"),
        y=y,
        color=color,
        fill=alt.condition(alt.datum.is_final, alt.Color("platform:N", legend=None), alt.value("white")),
        tooltip=tooltip,
    )
    return Chart("traffic", "Traffic by platform", about, _finish(line + points, 260), wide=True)


def _state(final: Any) -> str:
    return "final" if final else "open (still filling)"


def trending_chart(rows: list[dict[str, Any]]) -> Chart:
    title = "Trending content"
    if not rows:
        return Chart(
            "trending",
            title,
            "Gains in final windows (v_trending_content).",
            None,
            empty="no final window in this range yet",
        )
    window = f"{_label(rows[0]['window_start'])} {DASH} {_label(rows[0]['window_end'])[-9:]}"
    about = (
        f"Impressions in the newest final window ({window}, bars) against the window before (black ticks); "
        "the content that gained most first (v_trending_content)."
    )
    values = [
        {
            **r,
            "name": r["title"] or r["content_id"],
            "order": i,
            "gain": r["impressions"] - r["prev_impressions"],
        }
        for i, r in enumerate(rows)
    ]
    y = alt.Y("name:N", title=None, sort=alt.EncodingSortField("order"), axis=alt.Axis(labelLimit=180))
    tooltip = [
        alt.Tooltip("name:N", title="content"),
        alt.Tooltip("content_id:N"),
        alt.Tooltip("impressions:Q", format=","),
        alt.Tooltip("prev_impressions:Q", title="window before"),
        alt.Tooltip("impressions_growth:Q", title="growth", format="+.0%"),
        alt.Tooltip("play_starts:Q", title="plays", format=","),
    ]
    base = alt.Chart(_data(values))
    bars = base.mark_bar(color="#4c78a8").encode(
        x=alt.X("impressions:Q", title="impressions in the window"), y=y, tooltip=tooltip
    )
    ticks = base.mark_tick(color="black", thickness=2).encode(x="prev_impressions:Q", y=y, tooltip=tooltip)
    return Chart("trending", title, about, _finish(bars + ticks, 26 * len(rows)))


def ranking_chart(rows: list[dict[str, Any]]) -> Chart:
    title = "Ranked content per affiliate and slot"
    about = (
        f"CTR (point) with its 95 % Wilson interval (line), from v_content_rank_daily: the first "
        f"{RANKED_PER_SLOT} of the chosen day and slot by the interval's lower bound. Grey: fewer than "
        f"{MIN_VOLUME} impressions (low traffic, listed after the judged ones)."
    )
    if not rows:
        return Chart("ranking", title, about, None)
    values = [
        {
            **r,
            "day_label": r["day"][:10],
            "slot": f"{r['affiliate_id']} · {r['placement']}",
            "name": f"{r['position']}. {r['title'] or r['content_id']}",
            "traffic": "low traffic" if r["low_traffic"] else "judged",
        }
        for r in rows
    ]
    days = sorted({v["day_label"] for v in values})
    slots = sorted({v["slot"] for v in values})
    # The slot shown first: the newest day's busiest (a choice of what to show, not a figure).
    busiest: dict[str, int] = defaultdict(int)
    for v in values:
        if v["day_label"] == days[-1]:
            busiest[v["slot"]] += v["impressions"]
    day = alt.param(name="day", value=days[-1], bind=alt.binding_select(options=days, name="day "))
    slot = alt.param(
        name="slot",
        value=max(busiest, key=busiest.__getitem__),
        bind=alt.binding_select(options=slots, name="slot "),
    )
    base = (
        alt.Chart(_data(values))
        .add_params(day, slot)
        .transform_filter((alt.datum.day_label == day) & (alt.datum.slot == slot))
    )
    y = alt.Y("name:N", title=None, sort=alt.EncodingSortField("position"), axis=alt.Axis(labelLimit=200))
    color = alt.Color(
        "traffic:N",
        scale=alt.Scale(domain=["judged", "low traffic"], range=["#4c78a8", "#b0b0b0"]),
        legend=alt.Legend(orient="bottom", title=None),
    )
    tooltip = [
        alt.Tooltip("title:N"),
        alt.Tooltip("content_id:N"),
        alt.Tooltip("impressions:Q", format=","),
        alt.Tooltip("clicks:Q", format=","),
        alt.Tooltip("ctr:Q", title="CTR", format=".1%"),
        alt.Tooltip("ctr_lower:Q", title="lower bound", format=".1%"),
        alt.Tooltip("ctr_upper:Q", title="upper bound", format=".1%"),
        alt.Tooltip("unique_viewers:Q", title="viewers (day)", format=","),
    ]
    interval = base.mark_rule(strokeWidth=3).encode(
        x=alt.X("ctr_lower:Q", title="CTR, 95 % Wilson interval", axis=alt.Axis(format="%")),
        x2="ctr_upper:Q",
        y=y,
        color=color,
        tooltip=tooltip,
    )
    point = base.mark_point(filled=True, size=70, color="black").encode(x="ctr:Q", y=y, tooltip=tooltip)
    return Chart("ranking", title, about, _finish(interval + point, 26 * RANKED_PER_SLOT), wide=True)


def mix_charts(rows: list[dict[str, Any]]) -> list[Chart]:
    about = (
        "by content type and platform, over the UTC days of the range (v_engagement_by_type_platform); "
        "grey: nothing to divide by."
    )
    charts = []
    for rate, title, definition in (
        ("play_rate", "Play rate", "Plays per impression"),
        ("completion_rate", "Completion rate", "Completions per play"),
    ):
        if not rows:
            charts.append(Chart(f"mix-{rate}", title, f"{definition} {about}", None))
            continue
        base = alt.Chart(_data(rows)).encode(
            x=alt.X("platform:N", title=None, axis=alt.Axis(labelAngle=0, orient="top")),
            y=alt.Y("content_type:N", title=None),
        )
        blank = base.mark_rect(color="#e6e9ed")  # every cell; a rate covers it where there is one
        cells = base.mark_rect().encode(
            color=alt.Color(
                f"{rate}:Q",
                title=None,
                scale=alt.Scale(scheme="blues"),
                legend=alt.Legend(format=".0%", orient="bottom"),
            ),
            tooltip=[
                alt.Tooltip("content_type:N", title="content type"),
                alt.Tooltip("platform:N"),
                alt.Tooltip(f"{rate}:Q", title=title.lower(), format=".1%"),
                alt.Tooltip("impressions:Q", format=","),
                alt.Tooltip("play_starts:Q", title="plays", format=","),
                alt.Tooltip("completions:Q", format=","),
            ],
        )
        labels = (
            base.transform_filter(f"isValid(datum.{rate})")
            .mark_text(fontSize=12)
            .encode(
                text=alt.Text(f"{rate}:Q", format=".0%"),
                color=alt.condition(f"datum.{rate} > 0.5", alt.value("white"), alt.value("black")),
            )
        )
        types = len({r["content_type"] for r in rows})
        spec = _finish(blank + cells + labels, 34 * types)
        charts.append(Chart(f"mix-{rate}", title, f"{definition} {about}", spec))
    return charts


def viewers_chart(rows: list[dict[str, Any]]) -> Chart:
    title = "Unique viewers per day"
    about = (
        "Distinct users of each UTC day, per platform and over all platforms (v_unique_viewers_daily; "
        "estimates, about ±2 %; platforms do not add up to the total). Pale: the day is still open."
    )
    if not rows:
        return Chart("viewers", title, about, None)
    values = [
        {
            **r,
            "day_label": r["day"][:10],
            "platform": PLATFORM_ALL if r["platform"] == analytics.ALL else r["platform"],
            "state": _state(r["is_final"]),
        }
        for r in rows
    ]
    platforms = [PLATFORM_ALL, *sorted({v["platform"] for v in values} - {PLATFORM_ALL})]
    palette = ["#555555", "#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6"]
    chart = (
        alt.Chart(_data(values))
        .mark_bar()
        .encode(
            x=alt.X("day_label:O", title=None, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("platform:N", sort=platforms),
            y=alt.Y("unique_viewers:Q", title="unique viewers"),
            color=alt.Color(
                "platform:N",
                sort=platforms,
                scale=alt.Scale(domain=platforms, range=palette[: len(platforms)]),
                legend=alt.Legend(orient="bottom", title=None),
            ),
            opacity=alt.condition(alt.datum.is_final, alt.value(1.0), alt.value(0.5)),
            tooltip=[
                alt.Tooltip("day_label:N", title="day"),
                alt.Tooltip("platform:N"),
                alt.Tooltip("unique_viewers:Q", title="unique viewers", format=","),
                alt.Tooltip("state:N"),
            ],
        )
    )
    return Chart("viewers", title, about, _finish(chart, 240))


# --- health -------------------------------------------------------------------------------------------

_BUCKETS = (10, 60, 300, 900, 3600, 6 * 3600, 86400)  # seconds


def _bucket_size(batches: Sequence[BatchFigures]) -> int:
    span = (max(b.time for b in batches) - min(b.time for b in batches)).total_seconds()
    return next((size for size in _BUCKETS if span / size <= HEALTH_BUCKETS), _BUCKETS[-1])


def _bucket(moment: datetime, size: int) -> str:
    seconds = int(moment.timestamp()) // size * size
    return _iso(datetime.fromtimestamp(seconds, UTC))


def health_charts(batches: Sequence[BatchFigures], metrics_path: str | None) -> list[Chart]:
    """Records in / valid / quarantined, quarantine by reason, late and unknown-content events, and the
    freshness lag, summed (the lag: its maximum) per time bucket of the batches' start times."""
    ids = ("health-records", "health-reasons", "health-late", "health-freshness")
    titles = ("Records in", "Quarantined by reason", "Late events and unknown content", "Freshness lag")
    if not batches:
        where = f"at {metrics_path}" if metrics_path else "(metrics.path is unset)"
        empty = f"no health metrics {where} in this range"
        abouts = ("",) * 4
        return [Chart(i, t, a, None, empty=empty) for i, t, a in zip(ids, titles, abouts, strict=True)]
    size = _bucket_size(batches)
    per = f"per {_span_text(timedelta(seconds=size))} of batch start time (health metrics, {metrics_path})"
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    reasons: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    lag: dict[str, float] = {}
    for batch in batches:
        at = _bucket(batch.time, size)
        for key in ("records_in", "valid", "quarantined", "late_events", "unknown_content"):
            if key in batch.figures:
                sums[at][key] += batch.figures[key]
        for reason, count in batch.quarantined_by_reason.items():
            reasons[at][reason] += count
        if "freshness_lag_s" in batch.figures:
            lag[at] = max(lag.get(at, 0.0), batch.figures["freshness_lag_s"])

    def stamp(at: str) -> dict[str, str]:
        """A bucket's start and end (the bar's extent) and its start as the tooltip shows it."""
        until = _iso(datetime.fromisoformat(at.replace("Z", "+00:00")) + timedelta(seconds=size))
        return {"at": at, "until": until, "when": _label(at)}

    return [
        _records_chart(sums, per, stamp),
        _reasons_chart(reasons, per, stamp),
        _late_chart(sums, per, stamp),
        _freshness_chart(lag, per, stamp),
    ]


def _bucket_tooltip() -> alt.Tooltip:
    return alt.Tooltip("when:N", title="from")


Stamp = Callable[[str], dict[str, str]]


def _stacked_records(values: list[dict[str, Any]], color: alt.Color, tooltip: list[alt.Tooltip]) -> alt.Chart:
    """Records per time bucket, as bars stacked by ``color``'s field; the tooltip opens with the bucket."""
    return (
        alt.Chart(_data(values))
        .mark_bar()
        .encode(
            x=_time_axis("at"),
            x2="until:T",
            y=alt.Y("sum(records):Q", title="records"),
            color=color,
            tooltip=[_bucket_tooltip(), *tooltip],
        )
    )


def _records_chart(sums: dict[str, dict[str, float]], per: str, stamp: Stamp) -> Chart:
    about = f"Records read (valid + quarantined) {per}."
    values = [
        {
            **stamp(at),
            "status": status,
            "records": figures[status],
            "records_in": figures["records_in"],
        }
        for at, figures in sorted(sums.items())
        if "records_in" in figures
        for status in ("valid", "quarantined")
    ]
    if not values:
        return Chart("health-records", "Records in", about, None)
    chart = _stacked_records(
        values,
        alt.Color(
            "status:N",
            scale=alt.Scale(domain=["valid", "quarantined"], range=["#54a24b", "#e45756"]),
            legend=alt.Legend(orient="bottom", title=None),
        ),
        [
            alt.Tooltip("status:N"),
            alt.Tooltip("records:Q", format=","),
            alt.Tooltip("records_in:Q", title="records in", format=","),
        ],
    )
    return Chart("health-records", "Records in", about, _finish(chart, 200))


def _reasons_chart(reasons: dict[str, dict[str, int]], per: str, stamp: Stamp) -> Chart:
    about = f"Quarantined records by reason code {per}; a record with two reasons counts in both."
    totals: dict[str, int] = defaultdict(int)
    for counts in reasons.values():
        for reason, count in counts.items():
            totals[reason] += count
    named = set(sorted(totals, key=lambda r: (-totals[r], r))[:TOP_REASONS])
    values = []
    for at, counts in sorted(reasons.items()):
        grouped: dict[str, int] = defaultdict(int)
        for reason, count in counts.items():
            grouped[reason if reason in named else "other"] += count
        values += [{**stamp(at), "reason": r, "records": c} for r, c in grouped.items()]
    if not values:
        return Chart("health-reasons", "Quarantined by reason", about, None, empty="nothing quarantined")
    chart = _stacked_records(
        values,
        alt.Color(
            "reason:N",
            scale=alt.Scale(scheme="tableau10"),
            legend=alt.Legend(orient="bottom", title=None, columns=2, labelLimit=220),
        ),
        [alt.Tooltip("reason:N"), alt.Tooltip("records:Q", format=",")],
    )
    return Chart("health-reasons", "Quarantined by reason", about, _finish(chart, 200))


def _late_chart(sums: dict[str, dict[str, float]], per: str, stamp: Stamp) -> Chart:
    title = "Late events and unknown content"
    about = (
        f"Events behind the watermark (in the event log, not in the windows) and events of content the "
        f"dimension does not know, {per}."
    )
    names = {"late_events": "late events", "unknown_content": "unknown content"}
    values = [
        {**stamp(at), "figure": label, "events": figures[key]}
        for at, figures in sorted(sums.items())
        for key, label in names.items()
        if key in figures
    ]
    if not values:
        return Chart("health-late", title, about, None)
    chart = (
        alt.Chart(_data(values))
        .mark_line(point=True)
        .encode(
            x=_time_axis("at"),
            y=alt.Y("events:Q", title="events"),
            color=alt.Color(
                "figure:N",
                scale=alt.Scale(range=["#f58518", "#72b7b2"]),
                legend=alt.Legend(orient="bottom", title=None),
            ),
            tooltip=[_bucket_tooltip(), alt.Tooltip("figure:N"), alt.Tooltip("events:Q", format=",")],
        )
    )
    return Chart("health-late", title, about, _finish(chart, 200))


def _freshness_chart(lag: dict[str, float], per: str, stamp: Stamp) -> Chart:
    about = (
        f"How old the newest number was when it landed (batch end minus the newest event time), the worst "
        f"{per}."
    )
    if not lag:
        return Chart("health-freshness", "Freshness lag", about, None)
    worst = max(lag.values())
    unit, size = next(
        ((u, s) for u, s in (("days", 86400), ("hours", 3600), ("minutes", 60)) if worst >= 3 * s),
        ("seconds", 1),
    )
    values = [{**stamp(at), "lag": seconds / size} for at, seconds in sorted(lag.items())]
    chart = (
        alt.Chart(_data(values))
        .mark_line(point=True, color="#b279a2")
        .encode(
            x=_time_axis("at"),
            y=alt.Y("lag:Q", title=f"lag ({unit})"),
            tooltip=[_bucket_tooltip(), alt.Tooltip("lag:Q", title=f"lag ({unit})", format=",.1f")],
        )
    )
    return Chart("health-freshness", "Freshness lag", about, _finish(chart, 200))


def all_charts(data: ReportData) -> list[Chart]:
    return [
        traffic_chart(data.traffic),
        ranking_chart(data.ranking),
        trending_chart(data.trending),
        viewers_chart(data.viewers),
        *mix_charts(data.mix),
        *health_charts(data.health, data.metrics_path),
    ]


# ------------------------------------------------------------------------------------------ the page


def _tiles(data: ReportData) -> list[tuple[str, str, str]]:
    """(label, value, note) of the headline tiles: figures as read, formatted."""
    t = data.totals
    health = data.health
    ingest = [b.figures for b in health if b.query == "ingest"]
    records_in = sum(f.get("records_in", 0) for f in ingest) if ingest else None
    quarantined = sum(f.get("quarantined", 0) for f in ingest) if ingest else None
    engagement = [b for b in health if b.query == "engagement"]
    late = sum(b.figures.get("late_events", 0) for b in engagement) if engagement else None
    unknown = sum(b.figures.get("unknown_content", 0) for b in engagement) if engagement else None
    lags = [b for b in engagement if "freshness_lag_s" in b.figures]
    lag = lags[-1].figures["freshness_lag_s"] if lags else None
    watermark = _parse(data.progress.get("watermark"))
    behind = None if watermark is None else (data.generated - watermark).total_seconds()
    share = None if not records_in or quarantined is None else quarantined / records_in
    watch_hours = None if t.get("watch_time_ms") is None else t["watch_time_ms"] / 3_600_000
    return [
        ("impressions", _count(t.get("impressions")), "in the windows of the range"),
        ("CTR", _percent(t.get("ctr")), f"{_count(t.get('clicks'))} clicks"),
        ("play rate", _percent(t.get("play_rate")), f"{_count(t.get('play_starts'))} plays"),
        (
            "completion rate",
            _percent(t.get("completion_rate")),
            f"{_count(t.get('completions'))} completions",
        ),
        ("watch time", DASH if watch_hours is None else f"{watch_hours:,.1f} h", "progress + complete"),
        ("records in", _count(records_in), f"{_percent(share)} quarantined"),
        ("late events", _count(late), "behind the watermark"),
        ("unknown content", _count(unknown), "events not in the dimension"),
        ("freshness lag", _duration_text(lag), "newest batch"),
        (
            "watermark",
            DASH if watermark is None else watermark.strftime("%d %b %H:%M"),
            f"UTC, {_duration_text(behind)} ago; windows before it are final",
        ),
    ]


_CSS = """
:root { color-scheme: light; --ink: #1d2733; --muted: #5b6673; --line: #dde3ea; --card: #fff; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: #f3f5f8; }
header, main { max-width: 1280px; margin: 0 auto; padding: 16px; }
header h1 { margin: 0 0 4px; font-size: 1.5rem; }
header p { margin: 2px 0; color: var(--muted); }
h2 { font-size: 1.15rem; margin: 28px 0 10px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
.tile { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.tile .label { font-size: .78rem; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
.tile .value { font-size: 1.3rem; font-weight: 600; overflow-wrap: anywhere; }
.tile .note { font-size: .8rem; color: var(--muted); }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 520px), 1fr)); gap: 14px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px;
        min-width: 0; }
.card.wide { grid-column: 1 / -1; }
.card h3 { margin: 0 0 2px; font-size: 1rem; }
.card p.about { margin: 0 0 8px; color: var(--muted); font-size: .85rem; }
.chart { width: 100%; }
.chart .vega-bindings { margin-top: 6px; font-size: .9rem; }
.chart .vega-bind { display: inline-block; margin: 0 12px 4px 0; }
.chart .vega-bind select { max-width: 60vw; font: inherit; }
.empty { color: var(--muted); font-style: italic; padding: 24px 0; }
footer { max-width: 1280px; margin: 0 auto; padding: 8px 16px 32px; color: var(--muted); font-size: .8rem; }
@media (max-width: 600px) {
  body { font-size: 14px; } header, main { padding: 10px; } .tile .value { font-size: 1.1rem; }
}
"""

_SCRIPT = """
const specs = JSON.parse(document.getElementById("mediapulse-specs").textContent);
const options = { actions: false, renderer: "svg" };
Promise.all(Object.entries(specs).map(([id, spec]) => vegaEmbed(document.getElementById(id), spec, options)))
  .then(() => { document.body.dataset.charts = "drawn"; })
  .catch((error) => { document.body.dataset.charts = "failed"; console.error(error); });
"""


def _card(chart: Chart) -> str:
    body = (
        f'<div class="chart" id="{chart.id}"></div>'
        if chart.spec is not None
        else f'<div class="empty">{html.escape(chart.empty)}</div>'
    )
    about = f'<p class="about">{html.escape(chart.about)}</p>' if chart.about else ""
    wide = " wide" if chart.wide else ""
    return f'<section class="card{wide}"><h3>{html.escape(chart.title)}</h3>{about}{body}</section>'


def render_html(data: ReportData, charts: Sequence[Chart], javascript: str) -> str:
    """The page: headline tiles, then each chart in a card, with ``javascript`` (the Vega bundle) inline."""
    by_id = {c.id: c for c in charts}
    analysts = ["traffic", "ranking", "trending", "viewers", "mix-play_rate", "mix-completion_rate"]
    health = [c.id for c in charts if c.id.startswith("health-")]
    specs = {c.id: c.spec for c in charts if c.spec is not None}
    payload = json.dumps(specs, separators=(",", ":")).replace("</", "<\\/")
    tiles = "".join(
        f'<div class="tile"><div class="label">{html.escape(label)}</div>'
        f'<div class="value">{html.escape(value)}</div><div class="note">{html.escape(note)}</div></div>'
        for label, value, note in _tiles(data)
    )
    start, end = data.ranges.windows
    h_start, h_end = data.ranges.health
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mediapulse report: {html.escape(data.ranges.note)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>mediapulse report</h1>
<p>{html.escape(data.ranges.note)}: windows {html.escape(_when(start))} to {html.escape(_when(end))};
health batches {html.escape(_when(h_start))} to {html.escape(_when(h_end))}</p>
<p>{html.escape(data.source)} · generated {html.escape(_when(data.generated))}</p>
</header>
<main>
<div class="tiles">{tiles}</div>
<h2>Engagement</h2>
<div class="grid">{"".join(_card(by_id[i]) for i in analysts)}</div>
<h2>Data health</h2>
<div class="grid">{"".join(_card(by_id[i]) for i in health)}</div>
<noscript><p>The charts need JavaScript (included in this file; nothing is fetched).</p></noscript>
</main>
<footer>Every engagement number is read from the warehouse views (docs/analysts.md); the health figures
from the pipeline's metrics file (docs/operations.md). Times are UTC. Day-grained charts cover the UTC days
the range touches.</footer>
<script type="application/json" id="mediapulse-specs">{payload}</script>
<script type="module">{javascript}</script>
<script type="module">{_SCRIPT}</script>
</body>
</html>
"""


def javascript_bundle() -> str:
    """Vega, Vega-Lite and Vega-Embed as one script, from the vl-convert wheel (no network)."""
    import vl_convert

    return vl_convert.javascript_bundle(vl_version=VEGALITE_VERSION)


def write_html(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` in one step (a reader never sees half a report)."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_pngs(charts: Sequence[Chart], folder: Path, width: int = 900) -> list[Path]:
    """Each drawn chart as ``<folder>/<id>.png`` (rendered by vl-convert, no browser), ``width`` px wide."""
    import vl_convert

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for chart in charts:
        if chart.spec is None:
            continue
        spec = {**chart.spec, "width": width, "title": chart.title, "background": "white"}
        spec.pop("autosize", None)
        target = folder / f"{chart.id}.png"
        target.write_bytes(vl_convert.vegalite_to_png(spec, vl_version=VEGALITE_VERSION, scale=2))
        written.append(target)
    return written
