from __future__ import annotations

import io
import itertools
import math
from datetime import date

import pytest

from bootstrap.plan import plan, render
from tests.bootstrap.conftest import prod_config, small_config

# The small config's numbers (tests/bootstrap/conftest.py): primary m.small, 2 core + spot task m.big,
# 10,000 events/s per core, no headroom, 4-core executors of 8g, transient 6 h/day, 30.4 days/month.
SMALL = {"od": 0.2, "emr": 0.05}
BIG = {"od": 0.5, "spot": 0.2, "emr": 0.1}
DAYS = 30.4
TODAY = date(2026, 11, 24)


def test_records_bind_shards_for_small_events():
    result = plan(small_config(), 100_000, 600, today=TODAY)
    # writes: 60 MB/s -> 60 shards; 100,000 records/s -> 100 shards; reads: 2 x 60 MB/s / 2 MB/s -> 60.
    assert result.shards == 100
    assert result.binding_limit.startswith("write records")


def test_bytes_bind_shards_for_large_events_and_readers_multiply_reads():
    two_readers = plan(small_config(), 1_000, 5_000, today=TODAY)
    assert two_readers.shards == 5  # 5 MB/s written; 2 readers x 5 MB/s over 2 MB/s per shard = 5
    three = plan(small_config(planning={"stream_readers": 3, "headroom": 0.0}), 1_000, 5_000, today=TODAY)
    assert three.shards == math.ceil(3 * 5 / 2)
    assert three.binding_limit.startswith("read bytes")


def test_enhanced_fan_out_reads_do_not_bind():
    source = {"kind": "kinesis", "stream_name": "events", "consumer_type": "efo"}
    result = plan(
        small_config(source, planning={"stream_readers": 5, "headroom": 0.0}), 1_000, 5_000, today=TODAY
    )
    assert result.shards == 5
    assert result.get_records_per_shard_per_second == 0


def test_headroom_is_added_to_shards_and_cores():
    result = plan(small_config(planning={"headroom": 0.3, "events_per_second_per_core": 10_000}), 100_000)
    assert result.shards == 130
    assert result.long_running.cores == 13


def test_executors_and_nodes_for_both_lifecycles():
    result = plan(small_config(), 100_000, 600, today=TODAY)
    assert result.executors_per_core_node == result.executors_per_task_node == 2  # 8 vCPUs / 4 cores
    lr = result.long_running
    assert (lr.cores, lr.executors, lr.core_nodes, lr.task_nodes) == (10, 3, 2, 0)
    # A transient cluster up 6 h a day must do 24 h of work in 6: four times the cores.
    tr = result.transient
    assert (tr.cores, tr.executors, tr.core_nodes, tr.task_nodes) == (40, 10, 2, 3)


def test_monthly_costs_from_the_dated_price_table():
    result = plan(small_config(), 100_000, 600, today=TODAY)
    rows = {(row.lifecycle, row.task_purchase): row for row in result.costs}
    assert set(rows) == set(itertools.product(("long-running", "transient"), ("on-demand", "spot")))
    kinesis = 24 * DAYS * (100 * 0.02 + 100_000 * 3600 / 1e6 * 0.01)
    long_running = rows[("long-running", "on-demand")]
    assert long_running.hours_per_month == pytest.approx(24 * DAYS)
    assert long_running.ec2 == pytest.approx(24 * DAYS * (SMALL["od"] + 2 * BIG["od"]))
    assert long_running.emr == pytest.approx(24 * DAYS * (SMALL["emr"] + 2 * BIG["emr"]))
    assert long_running.kinesis == pytest.approx(kinesis)
    spot = rows[("transient", "spot")]
    assert spot.ec2 == pytest.approx(6 * DAYS * (SMALL["od"] + 2 * BIG["od"] + 3 * BIG["spot"]))
    assert spot.emr == pytest.approx(6 * DAYS * (SMALL["emr"] + 2 * BIG["emr"] + 3 * BIG["emr"]))
    on_demand = rows[("transient", "on-demand")]
    assert on_demand.ec2 == pytest.approx(6 * DAYS * (SMALL["od"] + 5 * BIG["od"]))
    assert spot.total == pytest.approx(spot.ec2 + spot.emr + kinesis)


def test_warnings_for_stale_or_foreign_prices_and_a_too_small_executor_cap():
    result = plan(prod_config(), 400_000, 600, today=date(2026, 11, 24))
    warnings = " | ".join(result.warnings)
    assert "prices are for us-east-1" in warnings
    assert "days old" in warnings
    assert "spark.dynamic_allocation_max is 24" in warnings


def test_render_prints_shards_nodes_and_costs():
    out = io.StringIO()
    render(plan(small_config(), 100_000, 600, today=TODAY), out)
    text = out.getvalue()
    assert "kinesis: 100 shards" in text
    assert "long-running  on-demand" in text and "transient     spot" in text


@pytest.mark.parametrize(("eps", "size"), [(0, 600), (10, 0)])
def test_plan_refuses_a_non_positive_load(eps: float, size: int):
    with pytest.raises(ValueError):
        plan(small_config(), eps, size)
