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
    AM_MAX_ATTEMPTS,
    CONSTRAINTS,
    ENTRY_SCRIPT,
    INSTALL_SCRIPT,
    WHEELHOUSE,
    Release,
    build_kill_step,
    build_run_job_flow_request,
    build_security_configuration,
    build_step,
    kill_step_name,
    s3_split,
    spark_submit_line,
    stop_marker_uri,
    yarn_tag,
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
YARN_DEFAULT_AM_MAX_ATTEMPTS = 2


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
    for name in (
        release.wheel_name,
        CONSTRAINTS,
        WHEELHOUSE,
        INSTALL_SCRIPT,
        ENTRY_SCRIPT,
        release.config_name,
    ):
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


def _check_cluster_fits(emr: EmrConfig, emr_client: Any, cluster_id: str, release: Release) -> None:
    """Refuse a step the cluster would run with other code or settings than the configuration says.

    The nodes hold the wheel their bootstrap action installed (the cluster's ``version`` tag); a step of
    another release would run that old code with the new release's config and entry script. The EMR
    release (``ReleaseLabel``) and YARN's cap on ApplicationMaster attempts are fixed at launch too.
    """
    cluster = emr_client.describe_cluster(ClusterId=cluster_id)["Cluster"]
    installed = {t["Key"]: t["Value"] for t in cluster.get("Tags", [])}.get("version")
    if installed is None:
        raise LaunchError(
            f"cluster {cluster_id} has no version tag, so which release its nodes installed is unknown: "
            "run the app on a cluster started by `mediapulse emr launch`"
        )
    if installed != release.version:
        raise LaunchError(
            f"cluster {cluster_id} runs mediapulse {installed}, which its bootstrap action installed; "
            f"release {release.version} needs a cluster launched with it "
            f"(`mediapulse emr launch --release {release.version}`), or pass --release {installed}"
        )
    label = cluster.get("ReleaseLabel")
    if label != emr.release_label:
        raise LaunchError(
            f"cluster {cluster_id} runs {label} but emr.release_label is {emr.release_label}: launch a "
            f"cluster of {emr.release_label}, or run on this one with --set emr.release_label={label}"
        )
    yarn_site = next(
        (
            c.get("Properties", {})
            for c in cluster.get("Configurations", [])
            if c["Classification"] == "yarn-site"
        ),
        {},
    )
    allowed = int(yarn_site.get(AM_MAX_ATTEMPTS, YARN_DEFAULT_AM_MAX_ATTEMPTS))
    if allowed < emr.spark.max_app_attempts:
        raise LaunchError(
            f"cluster {cluster_id} lets YARN start a driver {allowed} times ({AM_MAX_ATTEMPTS}) but "
            f"emr.spark.max_app_attempts is {emr.spark.max_app_attempts}: YARN would cap it silently; "
            f"launch a new cluster, or pass --set emr.spark.max_app_attempts={allowed}"
        )


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
    """Add the app's step (or ``mediapulse <app_args>``, e.g. a backfill) to a running cluster.

    Refused when the cluster runs another release of the app, another EMR release or a lower YARN
    attempt cap than configured, and while the same step, or the kill step of an earlier
    ``stop --force``, is pending or running: two drivers would share one checkpoint.
    """
    out = out or sys.stdout
    emr = emr_settings(cfg.emr)
    aws = _clients(emr, clients)
    emr_client = aws("emr")
    cluster = find_cluster(cfg, emr_client, cluster_id)
    release = _release(emr, version, config_name)
    _check_cluster_fits(emr, emr_client, cluster, release)
    _require_release(aws("s3"), release)
    step = build_step(cfg, release, app_args, name)
    active = _steps(emr_client, cluster, ACTIVE_STEP_STATES)
    running = [s for s in active if s.get("Name") == step["Name"]]
    if running:
        raise LaunchError(
            f"step {step['Name']!r} is already {running[0]['Status']['State']} on {cluster} "
            f"({running[0]['Id']}): two runs would share one checkpoint; stop it first"
        )
    killing = [s for s in active if s.get("Name") == kill_step_name(step["Name"])]
    if killing:
        raise LaunchError(
            f"the YARN application of an earlier {step['Name']!r} is being ended on {cluster} (step "
            f"{killing[0]['Id']}, {killing[0]['Status']['State']}): add the step once it has ended"
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
    # graceful: the step's final state, "timeout" or "no-step"; --force: "killed", "kill-failed", "timeout"
    outcome: str
    kill_step_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in {"COMPLETED", "CANCELLED", "killed", "no-step"}


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


def _wait_for_step(
    emr_client: Any,
    cluster_id: str,
    step_id: str,
    limit: float,
    poll: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> tuple[str, bool]:
    """Poll the step until it ends or ``limit`` seconds pass: (its last state, whether it ended)."""
    deadline = clock() + limit
    while True:
        state = emr_client.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]["Status"]["State"]
        if state in FINAL_STEP_STATES:
            return state, True
        remaining = deadline - clock()
        if remaining <= 0:
            return state, False
        sleep(min(poll, remaining))


def _force_stop(
    emr: EmrConfig,
    emr_client: Any,
    cluster: str,
    step: dict[str, Any] | None,
    option: str,
    limit: float,
    out: TextIO,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> StopResult:
    """Cancel the step, then end its YARN application with a kill step and wait for that to finish."""
    step_id = step["Id"] if step else None
    step_name = step.get("Name", emr.step_name) if step else emr.step_name
    if step_id is not None:
        emr_client.cancel_steps(ClusterId=cluster, StepIds=[step_id], StepCancellationOption=option)
        out.write(f"cancel requested for step {step_id} on {cluster} ({option})\n")
    else:
        out.write(
            f"no pending or running step named {step_name!r} on {cluster}; ending its YARN application\n"
        )
    # The cancel stops spark-submit; in cluster mode the driver runs on in YARN until it is killed.
    kill = build_kill_step(emr, step_name)
    kill_id = emr_client.add_job_flow_steps(JobFlowId=cluster, Steps=[kill])["StepIds"][0]
    tag = yarn_tag(step_name)
    out.write(f"step {kill_id} ({kill['Name']}) kills the YARN applications tagged {tag!r}\n")
    state, ended = _wait_for_step(
        emr_client, cluster, kill_id, limit, emr.stop_poll_interval.total_seconds(), sleep, clock
    )
    if not ended:
        out.write(
            f"kill step {kill_id} still {state} after {limit:.0f} s: check it with `emr status` before "
            "starting the stream again\n"
        )
        return StopResult(cluster, step_id, "timeout", kill_id)
    if state != "COMPLETED":
        out.write(
            f"kill step {kill_id} {state}: the driver may still run; see its log under "
            f"{emr.log_uri}/{cluster}/steps/{kill_id}/ or run `yarn application -list -appTags {tag}`\n"
        )
        return StopResult(cluster, step_id, "kill-failed", kill_id)
    out.write(f"kill step {kill_id} COMPLETED: no YARN application tagged {tag!r} is left\n")
    return StopResult(cluster, step_id, "killed", kill_id)


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
    """Stop the app's step: write the stop marker and wait (bounded); or, with ``force``, cancel the step
    (``SEND_INTERRUPT``, or ``TERMINATE_PROCESS``) and end its YARN application with a kill step."""
    out = out or sys.stdout
    emr = emr_settings(cfg.emr)
    aws = _clients(emr, clients)
    emr_client = aws("emr")
    cluster = find_cluster(cfg, emr_client, cluster_id)
    limit = emr.stop_timeout.total_seconds() if timeout is None else timeout
    if step_id is not None:
        step: dict[str, Any] | None = emr_client.describe_step(ClusterId=cluster, StepId=step_id)["Step"]
    else:
        active = [
            s for s in _steps(emr_client, cluster, ACTIVE_STEP_STATES) if s.get("Name") == emr.step_name
        ]
        step = active[0] if active else None  # ListSteps returns the newest first
    if force:
        option = "TERMINATE_PROCESS" if terminate_process else "SEND_INTERRUPT"
        return _force_stop(emr, emr_client, cluster, step, option, limit, out, sleep, clock)
    if step is None:
        out.write(f"no pending or running step named {emr.step_name!r} on {cluster}\n")
        return StopResult(cluster, None, "no-step")
    step_id = step["Id"]
    marker = write_stop_marker(aws("s3"), cfg, cluster, step_id)
    out.write(f"wrote {marker}: step {step_id} stops after its current micro-batch\n")
    state, ended = _wait_for_step(
        emr_client, cluster, step_id, limit, emr.stop_poll_interval.total_seconds(), sleep, clock
    )
    if ended:
        out.write(f"step {step_id} {state}\n")
        return StopResult(cluster, step_id, state)
    out.write(
        f"step {step_id} still {state} after {limit:.0f} s; the marker stays in place. "
        "Run `emr stop` again to keep waiting, or `emr stop --force` to cancel the step\n"
    )
    return StopResult(cluster, step_id, "timeout")
