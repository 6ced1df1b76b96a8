"""Run mediapulse on Amazon EMR: package, launch, add a step, watch it, stop it gracefully.

The request builders are pure (:mod:`bootstrap.cluster`); this module is the edge that talks to AWS
through boto3. Every function takes the loaded :class:`~streaming.config.AppConfig` and, for tests,
optional ``clients`` (see :class:`bootstrap.aws.Clients`) and an ``out`` stream for what it reports.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from botocore.exceptions import ClientError

from bootstrap.artifacts import PackageResult, PackagingError, app_version, package
from bootstrap.aws import Clients
from bootstrap.cluster import (
    CONSTRAINTS,
    ENTRY_SCRIPT,
    INSTALL_SCRIPT,
    Release,
    build_run_job_flow_request,
    build_security_configuration,
    build_step,
    s3_split,
    spark_submit_line,
    stop_marker_uri,
)
from bootstrap.iam import policies
from bootstrap.plan import Plan, plan, render
from bootstrap.settings import EmrConfig, emr_settings

if TYPE_CHECKING:
    from streaming.config import AppConfig

__all__ = [
    "LaunchError",
    "PackageResult",
    "PackagingError",
    "Plan",
    "add_step",
    "build_run_job_flow_request",
    "build_security_configuration",
    "launch",
    "package",
    "plan",
    "policies",
    "render",
    "status",
    "stop",
]

ACTIVE_CLUSTER_STATES = ["STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"]
ACTIVE_STEP_STATES = ["PENDING", "RUNNING"]
FINAL_STEP_STATES = {"COMPLETED", "CANCELLED", "FAILED", "INTERRUPTED"}


class LaunchError(RuntimeError):
    """An EMR operation cannot go ahead (missing artifacts, no such cluster, no running step...)."""


def _clients(emr: EmrConfig, clients: Clients | None) -> Clients:
    return clients or Clients(emr.region)


def _release(emr: EmrConfig, version: str | None, config_name: str) -> Release:
    return Release(artifacts=emr.artifacts, version=version or app_version(), config_name=config_name)


def _not_found(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}


def _missing_artifacts(s3: Any, release: Release) -> list[str]:
    missing = []
    for name in (release.wheel_name, CONSTRAINTS, INSTALL_SCRIPT, ENTRY_SCRIPT, release.config_name):
        bucket, key = s3_split(release.uri(name))
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if not _not_found(e):
                raise
            missing.append(release.uri(name))
    return missing


def _require_release(s3: Any, release: Release) -> None:
    missing = _missing_artifacts(s3, release)
    if missing:
        raise LaunchError(
            f"release {release.version} is incomplete ({', '.join(missing)} missing): "
            "run `mediapulse emr package` first"
        )


def _clear_stop_marker(s3: Any, cfg: AppConfig, out: TextIO) -> None:
    """A marker left by an earlier `emr stop` would stop the new run at its first batch."""
    bucket, key = s3_split(stop_marker_uri(cfg))
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if _not_found(e):
            return
        raise
    s3.delete_object(Bucket=bucket, Key=key)
    out.write(f"removed the stop marker left by an earlier stop: s3://{bucket}/{key}\n")


def ensure_security_configuration(cfg: AppConfig, emr_client: Any, out: TextIO) -> bool:
    """Create the named security configuration unless it exists; True when it was created."""
    emr = emr_settings(cfg.emr)
    wanted = build_security_configuration(cfg)
    try:
        found = emr_client.describe_security_configuration(Name=emr.security_configuration)
    except ClientError as e:
        # EMR answers InvalidRequestException for an unknown name (some emulators ResourceNotFound).
        if e.response.get("Error", {}).get("Code") not in {
            "InvalidRequestException",
            "ResourceNotFoundException",
        }:
            raise
        emr_client.create_security_configuration(
            Name=emr.security_configuration, SecurityConfiguration=json.dumps(wanted)
        )
        out.write(f"created security configuration {emr.security_configuration}\n")
        return True
    if json.loads(found.get("SecurityConfiguration") or "{}") != wanted:
        out.write(
            f"warning: security configuration {emr.security_configuration} exists and differs from the "
            "configured one; security configurations cannot be changed, so give the new one a new name\n"
        )
    return False


@dataclass(frozen=True)
class LaunchResult:
    request: dict[str, Any]
    spark_submit: str
    cluster_id: str | None = None


def launch(
    cfg: AppConfig,
    dry_run: bool = False,
    *,
    config_name: str = "emr.yaml",
    version: str | None = None,
    clients: Clients | None = None,
    out: TextIO | None = None,
) -> LaunchResult:
    """Start the cluster with the app's step. ``dry_run`` prints the exact request and calls nothing."""
    out = out or sys.stdout
    emr = emr_settings(cfg.emr)
    release = _release(emr, version, config_name)
    request = build_run_job_flow_request(cfg, release.config_uri)
    line = spark_submit_line(request["Steps"][0]["HadoopJarStep"]["Args"])
    if dry_run:
        out.write(json.dumps(request, indent=2) + "\n")
        out.write(f"\n# the step runs:\n{line}\n")
        return LaunchResult(request, line)
    aws = _clients(emr, clients)
    _require_release(aws("s3"), release)
    _clear_stop_marker(aws("s3"), cfg, out)
    emr_client = aws("emr")
    ensure_security_configuration(cfg, emr_client, out)
    response = emr_client.run_job_flow(**request)
    cluster_id = response["JobFlowId"]
    out.write(
        f"cluster {cluster_id} starting ({emr.lifecycle}, {emr.release_label}, release {release.version})\n"
    )
    return LaunchResult(request, line, cluster_id)


def find_cluster(cfg: AppConfig, emr_client: Any, cluster_id: str | None = None) -> str:
    """The given cluster, else the one active cluster named ``emr.name``."""
    if cluster_id:
        return cluster_id
    name = emr_settings(cfg.emr).name
    found = [
        cluster["Id"]
        for page in emr_client.get_paginator("list_clusters").paginate(ClusterStates=ACTIVE_CLUSTER_STATES)
        for cluster in page.get("Clusters", [])
        if cluster.get("Name") == name
    ]
    if not found:
        raise LaunchError(f"no active cluster named {name!r}: pass --cluster-id")
    if len(found) > 1:
        raise LaunchError(
            f"{len(found)} active clusters named {name!r} ({', '.join(found)}): pass --cluster-id"
        )
    return found[0]


def _steps(emr_client: Any, cluster_id: str, states: list[str] | None = None) -> list[dict[str, Any]]:
    kwargs: dict[str, Any] = {"ClusterId": cluster_id}
    if states:
        kwargs["StepStates"] = states
    return [
        s for page in emr_client.get_paginator("list_steps").paginate(**kwargs) for s in page.get("Steps", [])
    ]


@dataclass(frozen=True)
class StepResult:
    cluster_id: str
    step_id: str
    spark_submit: str


def add_step(
    cfg: AppConfig,
    cluster_id: str | None = None,
    *,
    app_args: tuple[str, ...] | None = None,
    name: str | None = None,
    config_name: str = "emr.yaml",
    version: str | None = None,
    clients: Clients | None = None,
    out: TextIO | None = None,
) -> StepResult:
    """Add the app's step (or ``mediapulse <app_args>``, e.g. a backfill) to a running cluster."""
    out = out or sys.stdout
    emr = emr_settings(cfg.emr)
    aws = _clients(emr, clients)
    emr_client = aws("emr")
    cluster = find_cluster(cfg, emr_client, cluster_id)
    release = _release(emr, version, config_name)
    _require_release(aws("s3"), release)
    step = build_step(cfg, release, app_args, name)
    running = [s for s in _steps(emr_client, cluster, ACTIVE_STEP_STATES) if s.get("Name") == step["Name"]]
    if running:
        raise LaunchError(
            f"step {step['Name']!r} is already {running[0]['Status']['State']} on {cluster} "
            f"({running[0]['Id']}): two runs would share one checkpoint; stop it first"
        )
    if step["Name"] == emr.step_name:
        _clear_stop_marker(aws("s3"), cfg, out)
    step_id = emr_client.add_job_flow_steps(JobFlowId=cluster, Steps=[step])["StepIds"][0]
    line = spark_submit_line(step["HadoopJarStep"]["Args"])
    out.write(f"step {step_id} ({step['Name']}) added to {cluster}\n{line}\n")
    return StepResult(cluster, step_id, line)


@dataclass(frozen=True)
class StatusResult:
    cluster_id: str
    state: str
    reason: str
    steps: tuple[dict[str, str], ...]


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if isinstance(value, datetime) else "-"


def status(
    cfg: AppConfig,
    cluster_id: str | None = None,
    *,
    clients: Clients | None = None,
    out: TextIO | None = None,
) -> StatusResult:
    """The cluster's state and its steps, newest first."""
    out = out or sys.stdout
    emr = emr_settings(cfg.emr)
    emr_client = _clients(emr, clients)("emr")
    cluster_id = find_cluster(cfg, emr_client, cluster_id)
    cluster = emr_client.describe_cluster(ClusterId=cluster_id)["Cluster"]
    state = cluster["Status"]["State"]
    reason = cluster["Status"].get("StateChangeReason", {}).get("Message", "")
    out.write(
        f"cluster {cluster_id} {cluster.get('Name', '')}: {state}" + (f" ({reason})" if reason else "") + "\n"
    )
    out.write(
        f"release {cluster.get('ReleaseLabel', '-')}, primary {cluster.get('MasterPublicDnsName') or '-'}\n"
    )
    steps = []
    for step in _steps(emr_client, cluster_id):
        timeline = step["Status"].get("Timeline", {})
        row = {
            "id": step["Id"],
            "name": step.get("Name", ""),
            "state": step["Status"]["State"],
            "started": _when(timeline.get("StartDateTime")),
        }
        steps.append(row)
        out.write(f"  {row['id']:<16}{row['name']:<32}{row['state']:<12}{row['started']}\n")
    return StatusResult(cluster_id, state, reason, tuple(steps))


@dataclass(frozen=True)
class StopResult:
    cluster_id: str
    step_id: str | None
    outcome: str  # the step's final state, "cancel-requested", "timeout" or "no-step"

    @property
    def ok(self) -> bool:
        return self.outcome in {"COMPLETED", "CANCELLED", "cancel-requested", "no-step"}


def write_stop_marker(s3: Any, cfg: AppConfig, cluster_id: str, step_id: str) -> str:
    """Write the marker object the app polls; it stops after its current micro-batch."""
    emr = emr_settings(cfg.emr)
    uri = stop_marker_uri(cfg)
    bucket, key = s3_split(uri)
    body = {"requested_at": datetime.now(UTC).isoformat(), "cluster_id": cluster_id, "step_id": step_id}
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(body).encode(),
        ContentType="application/json",
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=emr.kms_key_arn,
    )
    return uri


def stop(
    cfg: AppConfig,
    cluster_id: str | None = None,
    *,
    step_id: str | None = None,
    force: bool = False,
    terminate_process: bool = False,
    timeout: float | None = None,
    clients: Clients | None = None,
    out: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> StopResult:
    """Stop the app's step: write the stop marker and wait (bounded), or cancel it with ``force``."""
    out = out or sys.stdout
    emr = emr_settings(cfg.emr)
    aws = _clients(emr, clients)
    emr_client = aws("emr")
    cluster = find_cluster(cfg, emr_client, cluster_id)
    if step_id is None:
        active = [
            s for s in _steps(emr_client, cluster, ACTIVE_STEP_STATES) if s.get("Name") == emr.step_name
        ]
        if not active:
            out.write(f"no pending or running step named {emr.step_name!r} on {cluster}\n")
            return StopResult(cluster, None, "no-step")
        step_id = active[0]["Id"]  # ListSteps returns the newest first
    if force:
        option = "TERMINATE_PROCESS" if terminate_process else "SEND_INTERRUPT"
        emr_client.cancel_steps(ClusterId=cluster, StepIds=[step_id], StepCancellationOption=option)
        out.write(f"cancel requested for step {step_id} on {cluster} ({option})\n")
        return StopResult(cluster, step_id, "cancel-requested")

    marker = write_stop_marker(aws("s3"), cfg, cluster, step_id)
    out.write(f"wrote {marker}: step {step_id} stops after its current micro-batch\n")
    limit = emr.stop_timeout.total_seconds() if timeout is None else timeout
    poll = emr.stop_poll_interval.total_seconds()
    deadline = clock() + limit
    while True:
        state = emr_client.describe_step(ClusterId=cluster, StepId=step_id)["Step"]["Status"]["State"]
        if state in FINAL_STEP_STATES:
            out.write(f"step {step_id} {state}\n")
            return StopResult(cluster, step_id, state)
        remaining = deadline - clock()
        if remaining <= 0:
            out.write(
                f"step {step_id} still {state} after {limit:.0f} s; the marker stays in place. "
                "Run `emr stop` again to keep waiting, or `emr stop --force` to cancel the step\n"
            )
            return StopResult(cluster, step_id, "timeout")
        sleep(min(poll, remaining))
