"""What analysts read: the views and the ``top``/``rank`` reports, defined once and rendered for each
backend by sqlglot.

Each statement is written here once, in PostgreSQL's dialect, from one set of metric definitions
(:data:`SUMS`, :data:`RATES`, :func:`wilson`), and transpiled by sqlglot for PostgreSQL, Redshift and
DuckDB (types, ``INTERVAL`` literals, parameter markers). The reports select from the views: a metric
has one formula whether an analyst reads a view or runs a command. See docs/analysts.md.

Unique viewers are never added up: a window row carries its own estimate, ``daily_unique_viewers`` the
estimate of a whole UTC day at every combination of content, affiliate, placement and platform
(``'(all)'`` where a column is rolled up), merged from the sketches by Spark.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlglot

from sinks.warehouse.base import WarehouseError
from streaming.schema import ALL, DAILY_VIEWERS, ENGAGEMENT

Dialect = Literal["postgres", "redshift", "duckdb"]

WILSON_Z = 1.96  # a 95 % interval

VIEW_ENGAGEMENT = "v_engagement"
VIEW_DAILY_VIEWERS = "v_unique_viewers_daily"
VIEW_RANK_DAILY = "v_content_rank_daily"
VIEW_TOP_CTR = "v_top_content_ctr"
VIEW_TRENDING = "v_trending_content"
VIEW_ENGAGEMENT_MIX = "v_engagement_by_type_platform"
# In creation order: a view may read the ones before it.
VIEW_NAMES: tuple[str, ...] = (
    VIEW_ENGAGEMENT,
    VIEW_DAILY_VIEWERS,
    VIEW_RANK_DAILY,
    VIEW_TOP_CTR,
    VIEW_TRENDING,
    VIEW_ENGAGEMENT_MIX,
)

# Additive sums over any set of window rows (the columns of v_engagement). timed_watch_ms and
# played_length_s count content of known duration only, so watch_ratio compares like with like.
SUMS: dict[str, str] = {
    name: f"CAST(SUM({expr}) AS BIGINT)"  # SUM of a BIGINT is NUMERIC on PostgreSQL, HUGEINT on DuckDB
    for name, expr in {
        "impressions": "impressions",
        "clicks": "clicks",
        "play_starts": "play_starts",
        "completions": "completions",
        "watch_time_ms": "watch_time_ms",
        "timed_watch_ms": "CASE WHEN duration_s > 0 THEN watch_time_ms ELSE 0 END",
        "played_length_s": (
            "CASE WHEN duration_s > 0 THEN play_starts * CAST(duration_s AS BIGINT) ELSE 0 END"
        ),
    }.items()
}


def ratio(numerator: str, denominator: str) -> str:
    """``numerator / denominator`` in floating point; null when the denominator is 0."""
    return f"CAST({numerator} AS DOUBLE PRECISION) / NULLIF({denominator}, 0)"


# Rates over the sums above (never an average of per-window rates).
RATES: dict[str, str] = {
    "ctr": ratio("clicks", "impressions"),
    "play_rate": ratio("play_starts", "impressions"),
    "completion_rate": ratio("completions", "play_starts"),
    # Plays that started before the range and completed in it: completions a range's plays cannot explain.
    "completions_beyond_plays": "GREATEST(completions - play_starts, 0)",
    "avg_watch_s_per_play": f"{ratio('watch_time_ms', 'play_starts')} / 1000.0",
    "watch_ratio": f"{ratio('timed_watch_ms', 'played_length_s')} / 1000.0",
}

# What `rank --by` ranks: (successes, trials). Completions are capped at the play starts, since plays that
# started before the range complete in it too (completions_beyond_plays shows how many).
RANKINGS: dict[str, tuple[str, str]] = {
    "ctr": ("clicks", "impressions"),
    "play_rate": ("play_starts", "impressions"),
    "completion": ("LEAST(completions, play_starts)", "play_starts"),
}

# What `top --by` orders by (descending): a sum or a rate of RATES.
TOP_ORDERINGS: dict[str, str] = {
    "impressions": "impressions",
    "clicks": "clicks",
    "plays": "play_starts",
    "completions": "completions",
    "watch_time": "watch_time_ms",
    "ctr": "ctr",
    "play_rate": "play_rate",
    "completion_rate": "completion_rate",
}


def wilson(successes: str, trials: str, side: Literal["lower", "upper"], z: float = WILSON_Z) -> str:
    """A bound of the Wilson score interval of ``successes`` out of ``trials`` (null without trials):
    ``(p + z²/2n ∓ z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)``."""
    z2 = round(z * z, 6)
    n = f"CAST(NULLIF({trials}, 0) AS DOUBLE PRECISION)"
    p = f"LEAST(CAST({successes} AS DOUBLE PRECISION) / {n}, 1.0)"
    sign = "-" if side == "lower" else "+"
    return (
        f"({p} + {z2} / (2 * {n}) {sign} {z} * SQRT({p} * (1 - {p}) / {n} + {z2} / (4 * {n} * {n})))"
        f" / (1 + {z2} / {n})"
    )


# ------------------------------------------------------------------------------------------ rendering


def render(statement: str, dialect: Dialect) -> str:
    """``statement`` (PostgreSQL's dialect) in ``dialect``'s, by sqlglot."""
    try:
        return sqlglot.transpile(statement, read="postgres", write=dialect, pretty=True)[0]
    except sqlglot.errors.SqlglotError as e:
        raise WarehouseError(f"cannot render a statement for {dialect}: {e}") from e


@dataclass(frozen=True)
class Names:
    """Qualified names of what the views read: the engagement table, the rollup and the ledger."""

    table: str
    daily: str
    ledger: str
    schema: str

    def view(self, name: str) -> str:
        return f"{self.schema}.{name}"


DAY = "DATE_TRUNC('day', window_start)"


def _sums(*dims: str) -> str:
    return ",\n       ".join([*dims, *(f"{expr} AS {name}" for name, expr in SUMS.items())])


def _rates() -> str:
    return ",\n       ".join(f"{expr} AS {name}" for name, expr in RATES.items())


def view_bodies(names: Names) -> dict[str, str]:
    """The SELECT of each analyst view, in PostgreSQL's dialect, in creation order."""
    columns = ", ".join(f"e.{c}" for c in ENGAGEMENT.in_warehouse().names())
    daily_keys = ", ".join(f"d.{c}" for c in DAILY_VIEWERS.key)
    engagement = (
        f"WITH progress AS (SELECT MAX(watermark) AS watermark FROM {names.ledger})\n"
        f"SELECT {columns},\n"
        "       progress.watermark,\n"
        "       COALESCE(e.window_end <= progress.watermark, FALSE) AS is_final\n"
        f"FROM {names.table} AS e\n"
        "CROSS JOIN progress"
    )
    daily_viewers = (
        f"WITH progress AS (SELECT MAX(watermark) AS watermark FROM {names.ledger})\n"
        f"SELECT {daily_keys}, d.unique_viewers,\n"
        "       COALESCE(d.day + INTERVAL '1 day' <= progress.watermark, FALSE) AS is_final\n"
        f"FROM {names.daily} AS d\n"
        "CROSS JOIN progress"
    )
    bounds = ",\n       ".join(
        f"{wilson(s, t, side)} AS {by}_{side}"
        for by, (s, t) in RANKINGS.items()
        for side in ("lower", "upper")
    )
    rank_daily = (
        "WITH totals AS (\n"
        f"  SELECT {_sums(f'{DAY} AS day', 'affiliate_id', 'placement', 'content_id')},\n"
        "         MAX(title) AS title, MAX(category) AS category, MAX(content_type) AS content_type,\n"
        "         BOOL_AND(is_final) AS is_final\n"
        f"  FROM {names.view(VIEW_ENGAGEMENT)}\n"
        f"  GROUP BY {DAY}, affiliate_id, placement, content_id\n"
        ")\n"
        "SELECT t.*,\n"
        f"       {_rates()},\n"
        f"       {bounds},\n"
        "       v.unique_viewers\n"
        "FROM totals AS t\n"
        f"LEFT JOIN {names.daily} AS v\n"
        "  ON v.day = t.day AND v.content_id = t.content_id AND v.affiliate_id = t.affiliate_id\n"
        f"  AND v.placement = t.placement AND v.platform = '{ALL}'"
    )
    top_ctr = (
        "WITH totals AS (\n"
        f"  SELECT {_sums('content_id')}, MAX(title) AS title, MAX(category) AS category\n"
        f"  FROM {names.view(VIEW_ENGAGEMENT)}\n"
        "  GROUP BY content_id\n"
        ")\n"
        "SELECT content_id, title, category, impressions, clicks,\n"
        f"       {RATES['ctr']} AS ctr,\n"
        f"       {wilson('clicks', 'impressions', 'lower')} AS ctr_wilson_lower,\n"
        f"       {wilson('clicks', 'impressions', 'upper')} AS ctr_wilson_upper\n"
        "FROM totals"
    )
    trending = (
        "WITH per_window AS (\n"
        "  SELECT content_id, window_start, window_end, MAX(title) AS title,\n"
        "         SUM(impressions) AS impressions, SUM(play_starts) AS play_starts\n"
        f"  FROM {names.view(VIEW_ENGAGEMENT)}\n"
        "  WHERE is_final\n"
        "  GROUP BY content_id, window_start, window_end\n"
        ")\n"
        "SELECT cur.content_id, cur.title, cur.window_start, cur.window_end,\n"
        "       cur.impressions, COALESCE(prev.impressions, 0) AS prev_impressions,\n"
        f"       {ratio('cur.impressions - prev.impressions', 'prev.impressions')} AS impressions_growth,\n"
        "       cur.play_starts, COALESCE(prev.play_starts, 0) AS prev_play_starts,\n"
        f"       {ratio('cur.play_starts - prev.play_starts', 'prev.play_starts')} AS play_starts_growth\n"
        "FROM per_window AS cur\n"
        "LEFT JOIN per_window AS prev\n"
        "  ON prev.content_id = cur.content_id AND prev.window_end = cur.window_start"
    )
    mix = (
        "WITH totals AS (\n"
        f"  SELECT {_sums(f'{DAY} AS day', 'content_type', 'platform')},\n"
        "         BOOL_AND(is_final) AS is_final\n"
        f"  FROM {names.view(VIEW_ENGAGEMENT)}\n"
        f"  GROUP BY {DAY}, content_type, platform\n"
        ")\n"
        f"SELECT totals.*,\n       {_rates()}\n"
        "FROM totals"
    )
    return {
        VIEW_ENGAGEMENT: engagement,
        VIEW_DAILY_VIEWERS: daily_viewers,
        VIEW_RANK_DAILY: rank_daily,
        VIEW_TOP_CTR: top_ctr,
        VIEW_TRENDING: trending,
        VIEW_ENGAGEMENT_MIX: mix,
    }


def create_views_sql(names: Names, dialect: Dialect) -> list[str]:
    """CREATE OR REPLACE VIEW of each view in ``dialect``; late-binding on Redshift (they survive table
    swaps and are created before the tables they read hold rows)."""
    statements = []
    for name, body in view_bodies(names).items():
        text = render(f"CREATE OR REPLACE VIEW {names.view(name)} AS\n{body}", dialect)
        statements.append(text + "\nWITH NO SCHEMA BINDING" if dialect == "redshift" else text)
    return statements


# ------------------------------------------------------------------------------------------ reports

Ranking = Literal["ctr", "play_rate", "completion"]


@dataclass(frozen=True)
class Slice:
    """Which window rows a report covers: windows starting in ``[start, end)`` (naive UTC), and equality
    filters on the key columns and the content's category; None means any."""

    start: datetime | None = None
    end: datetime | None = None
    affiliate: str | None = None
    placement: str | None = None
    platform: str | None = None
    category: str | None = None
    final_only: bool = False

    def one_day(self) -> datetime | None:
        """The UTC day the slice covers exactly (its start), or None."""
        if self.start is None or self.end is None:
            return None
        midnight = self.start.replace(hour=0, minute=0, second=0, microsecond=0)
        return self.start if self.start == midnight and self.end - self.start == timedelta(days=1) else None


@dataclass(frozen=True)
class Report:
    """A report's rows, with its column names."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


_FILTERS = {
    "affiliate": "affiliate_id",
    "placement": "placement",
    "platform": "platform",
    "category": "category",
}


def _where(where: Slice) -> tuple[list[str], list[Any]]:
    clauses, params = [], []
    if where.start is not None:
        clauses.append("window_start >= %s")
        params.append(where.start)
    if where.end is not None:
        clauses.append("window_start < %s")
        params.append(where.end)
    for attribute, column in _FILTERS.items():
        value = getattr(where, attribute)
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)
    if where.final_only:
        clauses.append("is_final")
    return clauses, params


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise WarehouseError(f"the limit must be a positive integer, not {limit!r}")
    return limit


def _count(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise WarehouseError(f"{what} must be a whole number ≥ 0, not {value!r}")
    return value


TOP_COLUMNS: tuple[str, ...] = (
    "content_id", "title", "category", *SUMS, *RATES, "unique_viewers", "is_final",
)  # fmt: skip


def top_sql(
    names: Names, where: Slice, by: str = "impressions", limit: int = 10, min_impressions: int = 0
) -> tuple[str, list[Any]]:
    """Top content of the slice (statement in PostgreSQL's dialect, and its parameters).

    ``unique_viewers`` comes from the daily rollup when the slice is exactly one UTC day (at the level of
    its filters), else it is null: per-window estimates are never added up.
    """
    if by not in TOP_ORDERINGS:
        raise WarehouseError(f"cannot order by {by!r}: choose one of {', '.join(TOP_ORDERINGS)}")
    clauses, params = _where(where)
    day = where.one_day()
    if day is None:
        viewers_join = ""
        viewers = "CAST(NULL AS BIGINT)"
    else:
        level = {c: getattr(where, a) for a, c in _FILTERS.items() if c in DAILY_VIEWERS.names("group")}
        conditions = ["v.content_id = t.content_id", "v.day = %s"]
        viewer_params: list[Any] = [day]
        for column, value in level.items():
            conditions.append(f"v.{column} = %s")
            viewer_params.append(ALL if value is None else value)
        viewers_join = f"LEFT JOIN {names.daily} AS v\n  ON " + " AND ".join(conditions) + "\n"
        viewers = "v.unique_viewers"
        params = [*params, *viewer_params]
    statement = (
        "WITH totals AS (\n"
        f"  SELECT {_sums('content_id')},\n"
        "         MAX(title) AS title, MAX(category) AS category, BOOL_AND(is_final) AS is_final\n"
        f"  FROM {names.view(VIEW_ENGAGEMENT)}\n"
        + (f"  WHERE {' AND '.join(clauses)}\n" if clauses else "")
        + "  GROUP BY content_id\n"
        "), rated AS (\n"
        f"  SELECT totals.*, {_rates()}\n"
        "  FROM totals\n"
        ")\n"
        f"SELECT {', '.join(f't.{c}' for c in TOP_COLUMNS if c not in ('unique_viewers', 'is_final'))},\n"
        f"       {viewers} AS unique_viewers, t.is_final\n"
        "FROM rated AS t\n"
        f"{viewers_join}"
        f"WHERE t.impressions >= {_count(min_impressions, 'the minimum impressions')}\n"
        f"ORDER BY t.{TOP_ORDERINGS[by]} DESC NULLS LAST, t.content_id\n"
        f"LIMIT {_limit(limit)}"
    )
    return statement, params


RANK_COLUMNS: tuple[str, ...] = (
    "content_id", "title", "successes", "trials", "rate", "lower", "upper", "low_traffic",
    "completions_beyond_plays", "is_final",
)  # fmt: skip


def rank_sql(
    names: Names, where: Slice, by: Ranking = "ctr", limit: int = 20, min_volume: int = 100
) -> tuple[str, list[Any]]:
    """Content of one affiliate's slot ranked by the Wilson lower bound of the ``by`` rate: items with at
    least ``min_volume`` trials first, then the rest, flagged ``low_traffic``."""
    if by not in RANKINGS:
        raise WarehouseError(f"cannot rank by {by!r}: choose one of {', '.join(RANKINGS)}")
    if where.affiliate is None or where.placement is None:
        raise WarehouseError("a ranking needs an affiliate and a placement")
    successes, trials = RANKINGS[by]
    clauses, params = _where(where)
    minimum = _count(min_volume, "the minimum volume")
    statement = (
        "WITH totals AS (\n"
        f"  SELECT {_sums('content_id')}, MAX(title) AS title, BOOL_AND(is_final) AS is_final\n"
        f"  FROM {names.view(VIEW_ENGAGEMENT)}\n"
        f"  WHERE {' AND '.join(clauses)}\n"
        "  GROUP BY content_id\n"
        "), ranked AS (\n"
        "  SELECT content_id, title, is_final,\n"
        f"         {successes} AS successes, {trials} AS trials,\n"
        f"         {ratio(successes, trials)} AS rate,\n"
        f"         {wilson(successes, trials, 'lower')} AS lower,\n"
        f"         {wilson(successes, trials, 'upper')} AS upper,\n"
        f"         {trials} < {minimum} AS low_traffic,\n"
        f"         {RATES['completions_beyond_plays']} AS completions_beyond_plays\n"
        "  FROM totals\n"
        ")\n"
        f"SELECT {', '.join(RANK_COLUMNS)}\n"
        "FROM ranked\n"
        "ORDER BY CASE WHEN low_traffic THEN 1 ELSE 0 END, lower DESC NULLS LAST, trials DESC, content_id\n"
        f"LIMIT {_limit(limit)}"
    )
    return statement, params


def report_statements(names: Names) -> list[str]:
    """Each report's shapes (no filters; every filter, over one day and over two), for the statement
    listings."""
    day = datetime(2026, 1, 1)
    full = Slice(day, day + timedelta(days=1), "a", "p", "web", "c", final_only=True)
    shapes: list[str] = []
    for where in (Slice(), full, Slice(day, day + timedelta(days=2), "a", "p", "web", "c", final_only=True)):
        shapes += [top_sql(names, where, by)[0] for by in TOP_ORDERINGS]
    shapes += [rank_sql(names, full, by)[0] for by in RANKINGS]
    for where in (Slice(), full):
        shapes += [q.statement for q in report_queries(names, where) if q.statement not in shapes]
    return shapes


# ------------------------------------------------------------------------------------------ the HTML report
# What `mediapulse report` draws, each a read of one view. Window-grained sections cover the windows that
# start in the slice's range; day-grained views (rankings, viewers, content type and platform) cover the UTC
# days the range touches. Sums and rates use SUMS and RATES, the formulas the views are made of.


@dataclass(frozen=True)
class ViewQuery:
    """One read of the views: a statement in PostgreSQL's dialect, its parameters, its column names."""

    what: str
    statement: str
    params: tuple[Any, ...]
    columns: tuple[str, ...]


def _days(where: Slice) -> tuple[list[str], list[Any]]:
    """Filters on ``day`` of a day-grained view: the UTC days ``where``'s range touches."""
    clauses, params = [], []
    if where.start is not None:
        clauses.append("day >= %s")
        params.append(where.start.replace(hour=0, minute=0, second=0, microsecond=0))
    if where.end is not None:
        clauses.append("day < %s")
        params.append(where.end)
    return clauses, params


def _filtered(clauses: list[str]) -> str:
    return f"WHERE {' AND '.join(clauses)}\n" if clauses else ""


PROGRESS_COLUMNS: tuple[str, ...] = ("newest_window_end", "watermark", "newest_event")


def progress_query(names: Names) -> ViewQuery:
    """How far the warehouse has come: the newest window's end, the watermark, the newest event time."""
    statement = (
        "SELECT MAX(window_end) AS newest_window_end, MAX(watermark) AS watermark,\n"
        "       MAX(last_event_time) AS newest_event\n"
        f"FROM {names.view(VIEW_ENGAGEMENT)}"
    )
    return ViewQuery("warehouse progress", statement, (), PROGRESS_COLUMNS)


TOTALS_COLUMNS: tuple[str, ...] = (*SUMS, *RATES)


def totals_query(names: Names, where: Slice) -> ViewQuery:
    """The slice's sums and rates, in one row."""
    clauses, params = _where(where)
    statement = (
        "WITH totals AS (\n"
        f"  SELECT {_sums()}\n"
        f"  FROM {names.view(VIEW_ENGAGEMENT)}\n"
        f"  {_filtered(clauses)}"
        ")\n"
        f"SELECT totals.*,\n       {_rates()}\n"
        "FROM totals"
    )
    return ViewQuery("totals", statement, tuple(params), TOTALS_COLUMNS)


TRAFFIC_COLUMNS: tuple[str, ...] = ("window_start", "platform", *SUMS, "is_final")


def traffic_query(names: Names, where: Slice) -> ViewQuery:
    """Sums per window and platform."""
    clauses, params = _where(where)
    statement = (
        f"SELECT {_sums('window_start', 'platform')},\n"
        "       BOOL_AND(is_final) AS is_final\n"
        f"FROM {names.view(VIEW_ENGAGEMENT)}\n"
        f"{_filtered(clauses)}"
        "GROUP BY window_start, platform\n"
        "ORDER BY window_start, platform"
    )
    return ViewQuery("traffic by platform", statement, tuple(params), TRAFFIC_COLUMNS)


UNKNOWN_TYPE = "(unknown)"  # content the dimension does not know has no content type
MIX_COLUMNS: tuple[str, ...] = ("content_type", "platform", *SUMS, *RATES)


def mix_query(names: Names, where: Slice) -> ViewQuery:
    """Sums and rates per content type and platform over the days of ``where`` (ratios of sums)."""
    clauses, params = _days(where)
    sums = ",\n         ".join(f"CAST(SUM({name}) AS BIGINT) AS {name}" for name in SUMS)
    statement = (
        "WITH totals AS (\n"
        f"  SELECT COALESCE(content_type, '{UNKNOWN_TYPE}') AS content_type, platform,\n"
        f"         {sums}\n"
        f"  FROM {names.view(VIEW_ENGAGEMENT_MIX)}\n"
        f"  {_filtered(clauses)}"
        f"  GROUP BY COALESCE(content_type, '{UNKNOWN_TYPE}'), platform\n"
        ")\n"
        f"SELECT totals.*,\n       {_rates()}\n"
        "FROM totals\n"
        "ORDER BY content_type, platform"
    )
    return ViewQuery("rates by content type and platform", statement, tuple(params), MIX_COLUMNS)


SLOT_RANK_COLUMNS: tuple[str, ...] = (
    "day", "affiliate_id", "placement", "content_id", "title", "impressions", "clicks", "ctr",
    "ctr_lower", "ctr_upper", "unique_viewers", "is_final", "low_traffic", "position",
)  # fmt: skip


def slot_ranking_query(names: Names, where: Slice, per_slot: int = 10, min_volume: int = 100) -> ViewQuery:
    """The first ``per_slot`` content of each day, affiliate and placement, ranked as ``rank --by ctr``
    ranks: content with at least ``min_volume`` impressions by the Wilson lower bound of its CTR, then the
    rest, flagged ``low_traffic``."""
    clauses, params = _days(where)
    minimum = _count(min_volume, "the minimum volume")
    statement = (
        "WITH ranked AS (\n"
        "  SELECT day, affiliate_id, placement, content_id, title, impressions, clicks, ctr,\n"
        "         ctr_lower, ctr_upper, unique_viewers, is_final,\n"
        f"         impressions < {minimum} AS low_traffic,\n"
        "         ROW_NUMBER() OVER (\n"
        "           PARTITION BY day, affiliate_id, placement\n"
        f"           ORDER BY CASE WHEN impressions < {minimum} THEN 1 ELSE 0 END,\n"
        "                    ctr_lower DESC NULLS LAST, impressions DESC, content_id\n"
        "         ) AS position\n"
        f"  FROM {names.view(VIEW_RANK_DAILY)}\n"
        f"  {_filtered(clauses)}"
        ")\n"
        f"SELECT {', '.join(SLOT_RANK_COLUMNS)}\n"
        "FROM ranked\n"
        f"WHERE position <= {_limit(per_slot)}\n"
        "ORDER BY day, affiliate_id, placement, position"
    )
    return ViewQuery("ranking per slot", statement, tuple(params), SLOT_RANK_COLUMNS)


TRENDING_COLUMNS: tuple[str, ...] = (
    "content_id", "title", "window_start", "window_end", "impressions", "prev_impressions",
    "impressions_growth", "play_starts", "prev_play_starts",
)  # fmt: skip


def trending_query(names: Names, where: Slice, limit: int = 10) -> ViewQuery:
    """The content that gained the most impressions in the newest final window of the range."""
    clauses, params = _where(Slice(where.start, where.end))
    statement = (
        "WITH latest AS (\n"
        "  SELECT MAX(window_start) AS window_start\n"
        f"  FROM {names.view(VIEW_TRENDING)}\n"
        f"  {_filtered(clauses)}"
        ")\n"
        f"SELECT {', '.join(f't.{c}' for c in TRENDING_COLUMNS)}\n"
        f"FROM {names.view(VIEW_TRENDING)} AS t\n"
        "JOIN latest ON t.window_start = latest.window_start\n"
        "ORDER BY t.impressions - t.prev_impressions DESC, t.impressions DESC, t.content_id\n"
        f"LIMIT {_limit(limit)}"
    )
    return ViewQuery("trending content", statement, tuple(params), TRENDING_COLUMNS)


DAILY_VIEWER_COLUMNS: tuple[str, ...] = ("day", "platform", "unique_viewers", "is_final")


def daily_viewers_query(names: Names, where: Slice) -> ViewQuery:
    """Distinct viewers of each UTC day of the range, per platform and over all platforms (``(all)``)."""
    clauses, params = _days(where)
    clauses = [*(f"{c} = '{ALL}'" for c in ("content_id", "affiliate_id", "placement")), *clauses]
    statement = (
        f"SELECT {', '.join(DAILY_VIEWER_COLUMNS)}\n"
        f"FROM {names.view(VIEW_DAILY_VIEWERS)}\n"
        f"{_filtered(clauses)}"
        "ORDER BY day, platform"
    )
    return ViewQuery("unique viewers per day", statement, tuple(params), DAILY_VIEWER_COLUMNS)


def report_queries(names: Names, where: Slice) -> list[ViewQuery]:
    """Every read of the HTML report, for the statement listings."""
    return [
        progress_query(names),
        totals_query(names, where),
        traffic_query(names, where),
        mix_query(names, where),
        slot_ranking_query(names, where),
        trending_query(names, where),
        daily_viewers_query(names, where),
    ]
