"""What analysts read, end to end: simulated traffic through the real pipeline (two runs, so windows and
days are updated across batches) into DuckDB and into PostgreSQL, then the views and the ``top``/``rank``
reports against the independent oracle (tests/oracle.py): counts exact, unique viewers within 2 % at
1,000 distinct users or more, Wilson bounds as computed here in closed form, final windows behind the
recorded watermark."""

from __future__ import annotations

import csv
import itertools
import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sinks.metrics import read_figures
from sinks.warehouse import open_warehouse
from sinks.warehouse.analytics import Slice, report_queries
from streaming import html_report
from streaming.run import run_pipeline
from tests import oracle
from tests.pipeline import make_scenario, pipeline_config
from tests.sinks.warehouse.conftest import TEST_PASSWORD, PgServer

START = datetime(2026, 11, 1, 23, 30, tzinfo=UTC)  # two hours of traffic across a UTC midnight
WATERMARK_DELAY = timedelta(minutes=10)
Z = 1.96


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def analytics_run(
    request: Any, spark: Any, tmp_path_factory: Any
) -> Iterator[tuple[Any, oracle.Expected, Any]]:
    root = tmp_path_factory.mktemp(f"analytics-{request.param}")
    overrides = ["source.max_files_per_trigger=2"]
    schema = None
    with pytest.MonkeyPatch.context() as env:
        if request.param == "postgres":
            server: PgServer = request.getfixturevalue("postgres_server")
            schema = f"t_{uuid.uuid4().hex[:12]}"
            env.setenv("MEDIAPULSE_WAREHOUSE_PASSWORD", TEST_PASSWORD)
            overrides.append(f"warehouse.url={server.url(schema)}")
        scenario = make_scenario(
            root, events=24_000, files=4, contents=30, affiliates=4, users=30_000, seed=21, start=START
        )
        cfg = pipeline_config(root, *overrides)
        scenario.release(2)
        run_pipeline(spark, cfg, available_now=True)
        scenario.release()
        run_pipeline(spark, cfg, available_now=True)
        truth = oracle.expected(scenario.incoming_files(), scenario.now)
        with open_warehouse(cfg.warehouse, read_only=True) as warehouse:
            yield cfg, truth, warehouse
    if schema is not None:
        with server.admin() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def close_enough(estimate: int, exact: int) -> bool:
    """Within 2 % at 1,000 distinct users or more; small counts within 2 % or 2 users."""
    return abs(estimate - exact) <= max(0.02 * exact, 0 if exact >= 1000 else 2)


def wilson(successes: int, trials: int) -> tuple[float, float]:
    """The 95 % Wilson score interval, in closed form."""
    p = successes / trials
    centre = p + Z * Z / (2 * trials)
    spread = Z * math.sqrt(p * (1 - p) / trials + Z * Z / (4 * trials * trials))
    return (centre - spread) / (1 + Z * Z / trials), (centre + spread) / (1 + Z * Z / trials)


def test_daily_unique_viewers_match_the_exact_counts_at_every_level(analytics_run: Any) -> None:
    _, truth, warehouse = analytics_run
    got = {
        (utc(day), *keys): viewers
        for day, *keys, viewers in warehouse.fetch(
            "SELECT day, content_id, affiliate_id, placement, platform, unique_viewers "
            "FROM v_unique_viewers_daily"
        )
    }
    expected: dict[tuple, int] = {}
    for size in range(len(oracle.DIMENSIONS) + 1):
        for level in itertools.combinations(oracle.DIMENSIONS, size):
            expected.update(oracle.daily_viewers(truth.events, level))

    assert set(got) == set(expected)
    large = [k for k, v in expected.items() if v >= 1000]
    assert large, "the scenario must have rollups of 1,000 distinct users or more"
    wrong = {k: (got[k], v) for k, v in expected.items() if not close_enough(got[k], v)}
    assert wrong == {}
    per_content_day = [k for k in expected if k[1] != oracle.ALL and k[2:] == (oracle.ALL,) * 3]
    assert len({k[0] for k in per_content_day}) == 2  # both UTC days, per content


def test_window_counts_are_exact_and_keyed_by_placement(analytics_run: Any) -> None:
    _, truth, warehouse = analytics_run
    metrics = ("impressions", "clicks", "play_starts", "completions", "watch_time_ms")
    got = {
        (utc(r[0]), *r[1:5]): dict(zip(metrics, r[5:], strict=True))
        for r in warehouse.fetch(
            "SELECT window_start, content_id, affiliate_id, placement, platform, "
            f"{', '.join(metrics)} FROM v_engagement"
        )
    }
    assert got == {k: {m: v[m] for m in metrics} for k, v in truth.aggregates.items()}
    assert any(k[3] == oracle.NO_PLACEMENT for k in got)


def test_windows_behind_the_recorded_watermark_are_final(analytics_run: Any) -> None:
    _, truth, warehouse = analytics_run
    watermark = max(e["event_time"] for e in truth.events) - WATERMARK_DELAY
    found = warehouse.fetch("SELECT window_end, watermark, is_final FROM v_engagement")

    assert {utc(w) for _, w, _ in found} == {watermark}
    assert all(bool(final) == (utc(end) <= watermark) for end, _, final in found)
    assert any(final for *_, final in found) and not all(final for *_, final in found)


def _slot_with_most_impressions(truth: oracle.Expected) -> tuple[str, str]:
    impressions: dict[tuple[str, str], int] = {}
    for (_, _, affiliate, placement, _), values in truth.aggregates.items():
        slot = (affiliate, placement)
        impressions[slot] = impressions.get(slot, 0) + values["impressions"]
    return max(impressions, key=lambda k: (impressions[k], k))


def test_top_for_one_slot_and_day_sums_counts_and_reads_the_days_viewers(analytics_run: Any) -> None:
    _, truth, warehouse = analytics_run
    affiliate, placement = _slot_with_most_impressions(truth)
    day = datetime(2026, 11, 2, tzinfo=UTC)
    per_content: dict[str, dict[str, int]] = {}
    for (start, content, a, p, _), values in truth.aggregates.items():
        if (a, p) == (affiliate, placement) and day <= start < day + timedelta(days=1):
            sums = per_content.setdefault(content, {"impressions": 0, "clicks": 0, "play_starts": 0})
            for name in sums:
                sums[name] += values[name]
    viewers = oracle.daily_viewers(truth.events, ("content_id", "affiliate_id", "placement"))

    start = day.replace(tzinfo=None)
    where = Slice(start, start + timedelta(days=1), affiliate, placement)
    top = warehouse.top(where, "impressions", limit=5).records()

    ranked = sorted(per_content, key=lambda c: (-per_content[c]["impressions"], c))[:5]
    assert [r["content_id"] for r in top] == ranked
    for r in top:
        assert {k: r[k] for k in ("impressions", "clicks", "play_starts")} == per_content[r["content_id"]]
        exact = viewers[(day, r["content_id"], affiliate, placement, oracle.ALL)]
        assert close_enough(r["unique_viewers"], exact)
        assert r["ctr"] == pytest.approx(r["clicks"] / r["impressions"])


def test_rank_orders_a_slot_by_the_wilson_lower_bound_and_flags_low_traffic(analytics_run: Any) -> None:
    _, truth, warehouse = analytics_run
    affiliate, placement = _slot_with_most_impressions(truth)
    counts: dict[str, tuple[int, int]] = {}
    for (_, content, a, p, _), values in truth.aggregates.items():
        if (a, p) == (affiliate, placement):
            clicks, impressions = counts.get(content, (0, 0))
            counts[content] = (clicks + values["clicks"], impressions + values["impressions"])
    minimum = sorted(n for _, n in counts.values())[len(counts) // 2]  # half the items are judged

    ranked = warehouse.rank(Slice(affiliate=affiliate, placement=placement), "ctr", 100, minimum).records()

    assert {r["content_id"] for r in ranked} == {c for c, (_, n) in counts.items() if n}
    for r in ranked:
        clicks, impressions = counts[r["content_id"]]
        lower, upper = wilson(clicks, impressions)
        assert (r["successes"], r["trials"]) == (clicks, impressions)
        assert r["lower"] == pytest.approx(lower, abs=1e-12)
        assert r["upper"] == pytest.approx(upper, abs=1e-12)
        assert bool(r["low_traffic"]) == (impressions < minimum)
    judged = [r for r in ranked if not r["low_traffic"]]
    assert ranked[: len(judged)] == judged
    assert [r["lower"] for r in judged] == sorted((r["lower"] for r in judged), reverse=True)


def test_play_and_completion_rates_by_content_type_and_platform(analytics_run: Any) -> None:
    cfg, truth, warehouse = analytics_run
    with open(cfg.dimensions.content_path, newline="") as f:
        content_type = {r["content_id"]: r["content_type"] for r in csv.DictReader(f)}
    sums: dict[tuple[str | None, str], list[int]] = {}
    for (_, content, _, _, platform), values in truth.aggregates.items():
        row = sums.setdefault((content_type.get(content), platform), [0, 0, 0])
        row[0] += values["impressions"]
        row[1] += values["play_starts"]
        row[2] += values["completions"]

    got: dict[tuple[str | None, str], list[int]] = {}
    rates = {}
    for kind, platform, impressions, plays, completions, play_rate, completion_rate in warehouse.fetch(
        "SELECT content_type, platform, impressions, play_starts, completions, play_rate, completion_rate "
        "FROM v_engagement_by_type_platform"
    ):
        row = got.setdefault((kind, platform), [0, 0, 0])
        row[0] += impressions
        row[1] += plays
        row[2] += completions
        rates[(kind, platform)] = (play_rate, completion_rate)

    assert got == sums
    assert all(rate is None or 0 <= rate for pair in rates.values() for rate in pair)


def test_the_html_report_s_reads_run_on_every_backend_and_add_up_to_the_truth(analytics_run: Any) -> None:
    _, truth, warehouse = analytics_run
    reads = {
        q.what: warehouse.read_view(q).records() for q in report_queries(warehouse.tables.names(), Slice())
    }
    metrics = ("impressions", "clicks", "play_starts", "completions", "watch_time_ms")
    expected = {m: sum(v[m] for v in truth.aggregates.values()) for m in metrics}

    assert [what for what, rows in reads.items() if not rows] == []
    assert {m: reads["totals"][0][m] for m in metrics} == expected
    assert {m: sum(r[m] for r in reads["traffic by platform"]) for m in metrics} == expected
    assert {m: sum(r[m] for r in reads["rates by content type and platform"]) for m in metrics} == expected
    slots: dict[tuple, list[int]] = {}
    for row in reads["ranking per slot"]:
        slots.setdefault((row["day"], row["affiliate_id"], row["placement"]), []).append(row["position"])
        if row["impressions"]:  # no impressions (clicks of an earlier day's impression): no interval
            assert row["ctr_lower"] - 1e-9 <= min(row["ctr"], 1.0) <= row["ctr_upper"] + 1e-9  # rounding
    assert all(positions == list(range(1, len(positions) + 1)) and len(positions) <= 10
               for positions in slots.values())  # fmt: skip


def test_the_html_report_draws_every_chart_from_this_backend(analytics_run: Any) -> None:
    cfg, _, warehouse = analytics_run
    now = datetime.now(UTC)
    health = read_figures(Path(cfg.metrics.path))

    data = html_report.read_data(
        warehouse, (None, None, None), health, source="test", metrics_path="m", now=now
    )

    assert [c.id for c in html_report.all_charts(data) if c.spec is None] == []
