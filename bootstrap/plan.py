"""Capacity and cost: Kinesis shards, executors and nodes for a load, and what a month of it costs.

Shards (per shard, from the Kinesis quotas):

* writes: 1 MB/s and 1,000 records/s;
* reads (polling): 2 MB/s and 5 GetRecords calls/s, shared by every reader. The app has
  ``planning.stream_readers`` queries that each read the whole stream, so read bytes are multiplied by
  that. With enhanced fan-out each registered consumer gets its own 2 MB/s and reads never bind first.

MB here is 10^6 bytes (the quotas are stated in MB and MiB in different places; the smaller unit errs
towards more shards).

Compute: ``planning.events_per_second_per_core`` is an assumption until a load test replaces it. A
transient cluster running H hours a day must process a day's events in H hours, so it needs 24/H times
the cores of a long-running one.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Literal, TextIO

from bootstrap.settings import EmrConfig, FleetConfig, emr_settings

if TYPE_CHECKING:
    from streaming.config import AppConfig

SHARD_WRITE_BYTES = 1_000_000
SHARD_WRITE_RECORDS = 1_000
SHARD_READ_BYTES = 2_000_000
SHARD_READ_CALLS = 5
GET_RECORDS_MAX_RECORDS = 10_000
PUT_PAYLOAD_UNIT_BYTES = 25 * 1024
MEMORY_OVERHEAD = 1.1  # executor memory + YARN overhead (spark.executor.memoryOverheadFactor 0.1)


@dataclass(frozen=True)
class Compute:
    cores: int
    executors: int
    core_nodes: int
    task_nodes: int


@dataclass(frozen=True)
class CostRow:
    lifecycle: Literal["long-running", "transient"]
    task_purchase: Literal["on-demand", "spot"]
    hours_per_month: float
    primary_nodes: int
    core_nodes: int
    task_nodes: int
    ec2: float
    emr: float
    kinesis: float

    @property
    def total(self) -> float:
        return self.ec2 + self.emr + self.kinesis


@dataclass(frozen=True)
class Plan:
    events_per_second: float
    event_bytes: int
    ingress_bytes_per_second: float
    shards: int
    binding_limit: str
    get_records_per_shard_per_second: float
    long_running: Compute
    transient: Compute
    executors_per_core_node: int
    executors_per_task_node: int
    costs: tuple[CostRow, ...]
    pricing_as_of: date
    pricing_region: str
    warnings: tuple[str, ...]


def _memory_gib(spark_memory: str) -> float:
    match = re.fullmatch(r"(\d+)([kmgt])", spark_memory)
    if not match:
        raise ValueError(f"not a Spark memory size: {spark_memory!r}")
    return int(match.group(1)) * {"k": 1 / 1024**2, "m": 1 / 1024, "g": 1, "t": 1024}[match.group(2)]


def _executors_per_node(emr: EmrConfig, fleet: FleetConfig) -> tuple[int, str | None]:
    """Executors one node of the fleet's first (main) instance type holds, and a warning if memory binds."""
    price = emr.pricing.instances[fleet.instance_types[0].type]
    by_cores = price.vcpus // emr.spark.executor_cores
    by_memory = int(price.memory_gib * 0.8 // (_memory_gib(emr.spark.executor_memory) * MEMORY_OVERHEAD))
    per_node = max(1, min(by_cores, by_memory))
    warning = None
    if by_memory < by_cores:
        warning = (
            f"{fleet.instance_types[0].type}: memory, not cores, limits executors per node "
            f"({by_memory} of {emr.spark.executor_memory} vs {by_cores} by cores)"
        )
    return per_node, warning


def _shards(emr: EmrConfig, eps: float, event_bytes: int, efo: bool) -> tuple[int, str, float]:
    bytes_per_second = eps * event_bytes
    readers = emr.planning.stream_readers
    needs = {
        "write bytes (1 MB/s per shard)": bytes_per_second / SHARD_WRITE_BYTES,
        "write records (1,000/s per shard)": eps / SHARD_WRITE_RECORDS,
    }
    if not efo:
        needs[f"read bytes ({readers} readers share 2 MB/s per shard)"] = (
            readers * bytes_per_second / SHARD_READ_BYTES
        )
    binding = max(needs, key=lambda k: needs[k])
    shards = max(1, math.ceil(needs[binding] * (1 + emr.planning.headroom)))
    # Each reader calls GetRecords at least once per shard per poll; one call returns <= 10,000 records.
    calls = readers * max(1.0, eps / shards / GET_RECORDS_MAX_RECORDS) if not efo else 0.0
    return shards, binding, calls


def _compute(emr: EmrConfig, eps: float, per_core_node: int, per_task_node: int) -> Compute:
    cores = max(1, math.ceil(eps * (1 + emr.planning.headroom) / emr.planning.events_per_second_per_core))
    executors = math.ceil(cores / emr.spark.executor_cores)
    core_nodes = emr.fleets.core.on_demand_capacity
    if emr.fleets.task is None:
        return Compute(cores, executors, max(core_nodes, math.ceil(executors / per_core_node)), 0)
    remaining = max(0, executors - core_nodes * per_core_node)
    return Compute(cores, executors, core_nodes, math.ceil(remaining / per_task_node))


def plan(
    cfg: AppConfig, events_per_second: float, event_bytes: int = 600, *, today: date | None = None
) -> Plan:
    """Shards, executors, nodes and monthly cost for ``events_per_second`` events of ``event_bytes``."""
    if events_per_second <= 0 or event_bytes <= 0:
        raise ValueError("events per second and event bytes must be positive")
    emr = emr_settings(cfg.emr)
    efo = cfg.source.kind == "kinesis" and cfg.source.consumer_type == "efo"
    warnings: list[str] = []
    shards, binding, calls = _shards(emr, events_per_second, event_bytes, efo)
    if calls > SHARD_READ_CALLS:
        warnings.append(
            f"{calls:.1f} GetRecords calls/s per shard exceed the 5/s quota: add shards or use EFO"
        )

    per_core_node, warning = _executors_per_node(emr, emr.fleets.core)
    warnings += [warning] if warning else []
    per_task_node = per_core_node
    if emr.fleets.task is not None:
        per_task_node, warning = _executors_per_node(emr, emr.fleets.task)
        warnings += [warning] if warning else []
    hours_per_day = emr.planning.transient_hours_per_day
    long_running = _compute(emr, events_per_second, per_core_node, per_task_node)
    transient = _compute(emr, events_per_second * 24 / hours_per_day, per_core_node, per_task_node)
    for label, compute in (("long-running", long_running), ("transient", transient)):
        if compute.executors > emr.spark.dynamic_allocation_max:
            warnings.append(
                f"{label}: {compute.executors} executors needed but spark.dynamic_allocation_max is "
                f"{emr.spark.dynamic_allocation_max}"
            )

    pricing = emr.pricing
    if pricing.region != emr.region:
        warnings.append(f"prices are for {pricing.region}, the cluster runs in {emr.region}")
    age = ((today or date.today()) - pricing.as_of).days
    if age > 180:
        warnings.append(f"the price table is {age} days old (as_of {pricing.as_of}): refresh it")

    days = emr.planning.days_per_month
    units_per_record = math.ceil(event_bytes / PUT_PAYLOAD_UNIT_BYTES)
    kinesis = (
        days
        * 24
        * (
            shards * pricing.kinesis_shard_hour
            + events_per_second
            * 3600
            * units_per_record
            / 1e6
            * pricing.kinesis_put_payload_units_per_million
        )
    )
    primary = pricing.instances[emr.fleets.primary.instance_types[0].type]
    core = pricing.instances[emr.fleets.core.instance_types[0].type]
    task_fleet = emr.fleets.task or emr.fleets.core
    task = pricing.instances[task_fleet.instance_types[0].type]
    costs = []
    for lifecycle, compute, hours in (
        ("long-running", long_running, 24 * days),
        ("transient", transient, hours_per_day * days),
    ):
        for purchase in ("on-demand", "spot"):
            task_ec2 = task.spot if purchase == "spot" else task.on_demand
            ec2 = hours * (
                primary.on_demand + compute.core_nodes * core.on_demand + compute.task_nodes * task_ec2
            )
            uplift = hours * (primary.emr + compute.core_nodes * core.emr + compute.task_nodes * task.emr)
            costs.append(
                CostRow(
                    lifecycle,
                    purchase,
                    hours,
                    1,
                    compute.core_nodes,
                    compute.task_nodes,
                    ec2,
                    uplift,
                    kinesis,
                )
            )
    return Plan(
        events_per_second=events_per_second,
        event_bytes=event_bytes,
        ingress_bytes_per_second=events_per_second * event_bytes,
        shards=shards,
        binding_limit=binding,
        get_records_per_shard_per_second=calls,
        long_running=long_running,
        transient=transient,
        executors_per_core_node=per_core_node,
        executors_per_task_node=per_task_node,
        costs=tuple(costs),
        pricing_as_of=pricing.as_of,
        pricing_region=pricing.region,
        warnings=tuple(warnings),
    )


def render(result: Plan, out: TextIO | None = None) -> None:
    """Print the plan as a few aligned tables."""
    out = out or sys.stdout
    w = out.write
    w(
        f"load: {result.events_per_second:,.0f} events/s x {result.event_bytes} B = "
        f"{result.ingress_bytes_per_second / 1e6:,.2f} MB/s\n"
    )
    calls = result.get_records_per_shard_per_second
    w(f"kinesis: {result.shards} shards (binding limit: {result.binding_limit})")
    w(f", {calls:.1f} GetRecords calls/s per shard (quota 5)\n" if calls else ", enhanced fan-out\n")
    w(f"executors per node: core {result.executors_per_core_node}, task {result.executors_per_task_node}\n\n")
    w(f"{'lifecycle':<14}{'cores':>7}{'executors':>11}{'core nodes':>12}{'task nodes':>12}\n")
    for label, compute in (("long-running", result.long_running), ("transient", result.transient)):
        w(
            f"{label:<14}{compute.cores:>7}{compute.executors:>11}{compute.core_nodes:>12}{compute.task_nodes:>12}\n"
        )
    w(f"\nmonthly cost, USD (prices of {result.pricing_region} as of {result.pricing_as_of}; estimates)\n")
    w(f"{'lifecycle':<14}{'task purchase':<15}{'hours':>7}{'EC2':>11}{'EMR':>10}")
    w(f"{'Kinesis':>10}{'total':>11}\n")
    for row in result.costs:
        w(
            f"{row.lifecycle:<14}{row.task_purchase:<15}{row.hours_per_month:>7.0f}{row.ec2:>11,.0f}"
            f"{row.emr:>10,.0f}{row.kinesis:>10,.0f}{row.total:>11,.0f}\n"
        )
    for warning in result.warnings:
        w(f"warning: {warning}\n")
