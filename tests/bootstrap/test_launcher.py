from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.validate import ParamValidator

from bootstrap.artifacts import PackageResult, package
from bootstrap.aws import Clients
from bootstrap.cluster import build_security_configuration
from bootstrap.launcher import LaunchError, add_step, launch, status, stop
from streaming.config import AppConfig
from tests.bootstrap.conftest import ACCOUNT, PROD, REGION, prod_config

BUCKETS = ("mediapulse-prod-artifacts", "mediapulse-prod-checkpoints", "mediapulse-prod-logs")
RELEASE = "mediapulse-prod-artifacts"
MARKER_KEY = "engagement/_STOP"


def _set_step_state(cluster_id: str, step_id: str, state: str) -> None:
    """Finish a step in moto's in-process state (the loopback server runs in this process).

    moto's server files EMR clusters under the region it reads from the endpoint's host name, which for
    127.0.0.1 is its default region, so the cluster is looked up in every region of the account.
    """
    from moto.emr.models import emr_backends

    (cluster,) = [b.clusters[cluster_id] for b in emr_backends[ACCOUNT].values() if cluster_id in b.clusters]
    (step,) = [s for s in cluster.steps if s.id == step_id]
    step.state = state


class RecordsCancels:
    """The moto EMR client, with CancelSteps (which moto does not implement) checked against the API
    model, recorded, and applied to moto's state as EMR would: the step ends CANCELLED."""

    def __init__(self, emr: Any) -> None:
        self._emr = emr
        self.cancels: list[dict[str, Any]] = []

    def cancel_steps(self, **request: Any) -> dict[str, Any]:
        shape = self._emr.meta.service_model.operation_model("CancelSteps").input_shape
        report = ParamValidator().validate(request, shape)
        assert not report.has_errors(), report.generate_report()
        self.cancels.append(request)
        for step_id in request["StepIds"]:
            _set_step_state(request["ClusterId"], step_id, "CANCELLED")
        return {"CancelStepsInfoList": [{"StepId": s, "Status": "SUBMITTED"} for s in request["StepIds"]]}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._emr, name)


def _with_cancels(aws: Clients) -> tuple[Callable[[str], Any], RecordsCancels]:
    recorder = RecordsCancels(aws("emr"))
    return (lambda service: recorder if service == "emr" else aws(service)), recorder


def _package(
    aws: Clients, wheel: Path, wheelhouse: Path, tmp_path: Path
) -> tuple[AppConfig, str, PackageResult]:
    key_arn = aws("kms").create_key(Description="mediapulse test")["KeyMetadata"]["Arn"]
    s3 = aws("s3")
    for bucket in BUCKETS:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    cfg = prod_config(f"emr.kms_key_arn={key_arn}")
    result = package(
        cfg,
        PROD,
        dist_dir=tmp_path / "dist",
        wheel=wheel,
        wheelhouse=wheelhouse,
        clients=aws,
        out=io.StringIO(),
    )
    return cfg, key_arn, result


@pytest.fixture
def packaged(
    aws: Clients, built_wheel: Path, prod_wheelhouse: Path, tmp_path: Path
) -> tuple[AppConfig, str, PackageResult]:
    return _package(aws, built_wheel, prod_wheelhouse, tmp_path)


@pytest.fixture
def launched(aws: Clients, packaged: tuple[AppConfig, str, PackageResult]) -> tuple[AppConfig, str]:
    cfg = packaged[0]
    result = launch(cfg, clients=aws, out=io.StringIO())
    assert result.cluster_id
    return cfg, result.cluster_id


def _step_named(aws: Clients, cluster_id: str, name: str) -> dict[str, Any]:
    (step,) = [s for s in aws("emr").list_steps(ClusterId=cluster_id)["Steps"] if s["Name"] == name]
    return step


def test_package_uploads_every_release_file_with_sse_kms(aws: Clients, packaged: tuple):
    _, key_arn, result = packaged
    expected = {
        "mediapulse-0.1.0-py3-none-any.whl",
        "mediapulse-validator.jar",
        "constraints.txt",
        "wheelhouse.tar",
        "install.sh",
        "emr_entry.py",
        "emr.yaml",
    }
    assert {uri.rsplit("/", 1)[1] for uri in result.uploaded} == expected
    s3 = aws("s3")
    for name in expected:
        head = s3.head_object(Bucket=RELEASE, Key=f"emr/0.1.0/{name}")
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == key_arn
    uploaded_config = s3.get_object(Bucket=RELEASE, Key="emr/0.1.0/emr.yaml")["Body"].read()
    assert uploaded_config == PROD.read_bytes()


def test_constraints_pin_the_dependency_closure_without_pyspark(packaged: tuple):
    import importlib.metadata

    pins = [line for line in packaged[2].files["constraints.txt"].read_text().splitlines() if "==" in line]
    names = {line.split("==")[0] for line in pins}
    assert "pyspark" not in names and "py4j" not in names
    assert f"pydantic=={importlib.metadata.version('pydantic')}" in pins
    assert "pydantic-core" in names  # a dependency of a dependency
    assert "psycopg-binary" in names  # an extra the project asks for (psycopg[binary])


def test_dry_run_prints_the_request_and_calls_nothing():
    def no_aws(service: str) -> Any:
        raise AssertionError(f"dry run called {service}")

    out = io.StringIO()
    result = launch(prod_config(), dry_run=True, clients=no_aws, out=out)  # type: ignore[arg-type]
    assert result.cluster_id is None
    text = out.getvalue()
    printed = json.loads(text.split("\n# the step runs:\n")[0])
    assert printed == result.request
    assert text.rstrip().endswith(result.spark_submit)
    assert result.spark_submit.startswith("spark-submit --deploy-mode cluster --master yarn")


def test_launch_refuses_a_release_that_was_not_packaged(aws: Clients):
    aws("s3").create_bucket(Bucket=RELEASE, CreateBucketConfiguration={"LocationConstraint": REGION})
    with pytest.raises(LaunchError, match="run `mediapulse emr package` first"):
        launch(prod_config(), clients=aws, out=io.StringIO())


def test_launch_creates_the_security_configuration_and_the_cluster(aws: Clients, launched: tuple):
    cfg, cluster_id = launched
    emr = aws("emr")
    stored = emr.describe_security_configuration(Name="mediapulse-prod-v1")["SecurityConfiguration"]
    assert json.loads(stored) == build_security_configuration(cfg)
    cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    assert cluster["Name"] == "mediapulse-prod"
    assert cluster["ReleaseLabel"] == "emr-spark-8.0.0"
    assert cluster["SecurityConfiguration"] == "mediapulse-prod-v1"
    assert cluster["TerminationProtected"] is True
    step = _step_named(aws, cluster_id, "mediapulse-stream")
    assert step["Config"]["Jar"] == "command-runner.jar"


def test_second_launch_reuses_the_security_configuration(aws: Clients, launched: tuple):
    out = io.StringIO()
    launch(launched[0], clients=aws, out=out)
    assert "created security configuration" not in out.getvalue()


def test_launch_removes_a_stop_marker_left_by_an_earlier_stop(aws: Clients, packaged: tuple):
    aws("s3").put_object(Bucket="mediapulse-prod-checkpoints", Key=MARKER_KEY, Body=b"{}")
    out = io.StringIO()
    launch(packaged[0], clients=aws, out=out)
    assert "removed the stop marker" in out.getvalue()
    listed = aws("s3").list_objects_v2(Bucket="mediapulse-prod-checkpoints", Prefix=MARKER_KEY)
    assert listed["KeyCount"] == 0


def test_add_step_refuses_a_second_run_of_the_stream(aws: Clients, launched: tuple):
    cfg, cluster_id = launched
    with pytest.raises(LaunchError, match="already RUNNING"):
        add_step(cfg, cluster_id, clients=aws, out=io.StringIO())


def test_add_step_runs_a_backfill_beside_the_stream(aws: Clients, launched: tuple):
    cfg, cluster_id = launched
    args = ("backfill", "--from", "2026-11-01T00:00:00Z", "--to", "2026-11-02T00:00:00Z")
    result = add_step(cfg, cluster_id, app_args=args, clients=aws, out=io.StringIO())
    step = _step_named(aws, cluster_id, "mediapulse-stream-backfill")
    assert step["Id"] == result.step_id
    assert step["Config"]["Args"][-7:] == [args[0], "--config", "emr.yaml", *args[1:]]


def test_add_step_finds_the_cluster_by_name(aws: Clients, launched: tuple):
    cfg, cluster_id = launched
    result = add_step(cfg, app_args=("backfill", "--from", "a", "--to", "b"), clients=aws, out=io.StringIO())
    assert result.cluster_id == cluster_id


def test_status_shows_the_cluster_and_its_steps(aws: Clients, launched: tuple):
    cfg, cluster_id = launched
    out = io.StringIO()
    result = status(cfg, clients=aws, out=out)
    assert result.cluster_id == cluster_id
    assert [(s["name"], s["state"]) for s in result.steps] == [("mediapulse-stream", "RUNNING")]
    assert cluster_id in out.getvalue() and "mediapulse-stream" in out.getvalue()


def test_status_without_a_cluster_says_so(aws: Clients):
    with pytest.raises(LaunchError, match="no active cluster named 'mediapulse-prod'"):
        status(prod_config(), clients=aws, out=io.StringIO())


def test_stop_writes_the_marker_and_waits_for_the_step(aws: Clients, packaged: tuple, launched: tuple):
    cfg, cluster_id = launched
    step_id = _step_named(aws, cluster_id, "mediapulse-stream")["Id"]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # the app reacting to the marker, as seen from EMR
        sleeps.append(seconds)
        marker = aws("s3").get_object(Bucket="mediapulse-prod-checkpoints", Key=MARKER_KEY)
        assert json.loads(marker["Body"].read())["step_id"] == step_id
        _set_step_state(cluster_id, step_id, "COMPLETED")

    result = stop(cfg, clients=aws, out=io.StringIO(), sleep=sleep)
    assert (result.step_id, result.outcome, result.ok) == (step_id, "COMPLETED", True)
    assert sleeps == [20.0]
    head = aws("s3").head_object(Bucket="mediapulse-prod-checkpoints", Key=MARKER_KEY)
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == packaged[1]


def test_stop_gives_up_after_its_timeout_and_leaves_the_marker(aws: Clients, launched: tuple):
    cfg, cluster_id = launched
    out = io.StringIO()
    result = stop(cfg, cluster_id, timeout=0, clients=aws, out=out, sleep=lambda _: None)
    assert (result.outcome, result.ok) == ("timeout", False)
    assert "--force" in out.getvalue()
    aws("s3").head_object(Bucket="mediapulse-prod-checkpoints", Key=MARKER_KEY)


def test_stop_with_nothing_running_is_a_no_op(aws: Clients, launched: tuple):
    cfg, cluster_id = launched
    step_id = _step_named(aws, cluster_id, "mediapulse-stream")["Id"]
    _set_step_state(cluster_id, step_id, "COMPLETED")
    result = stop(cfg, cluster_id, clients=aws, out=io.StringIO())
    assert (result.outcome, result.ok) == ("no-step", True)


def test_launch_lets_yarn_restart_the_driver_as_often_as_spark_asks(aws: Clients, launched: tuple):
    cluster = aws("emr").describe_cluster(ClusterId=launched[1])["Cluster"]
    (yarn_site,) = [c for c in cluster["Configurations"] if c["Classification"] == "yarn-site"]
    assert yarn_site["Properties"]["yarn.resourcemanager.am.max-attempts"] == "4"
    assert {t["Key"]: t["Value"] for t in cluster["Tags"]}["version"] == "0.1.0"


def test_add_step_refuses_a_release_other_than_the_one_the_nodes_hold(aws: Clients, launched: tuple):
    cfg, cluster_id = launched
    _set_step_state(cluster_id, _step_named(aws, cluster_id, "mediapulse-stream")["Id"], "COMPLETED")
    with pytest.raises(LaunchError, match=r"runs mediapulse 0\.1\.0, which its bootstrap action installed"):
        add_step(cfg, cluster_id, version="0.2.0", clients=aws, out=io.StringIO())


def test_add_step_refuses_a_cluster_of_another_emr_release(aws: Clients, launched: tuple):
    _, cluster_id = launched
    cfg = prod_config("emr.release_label=emr-spark-8.0.1")
    with pytest.raises(LaunchError, match=r"emr-spark-8\.0\.0 but emr\.release_label is emr-spark-8\.0\.1"):
        add_step(cfg, cluster_id, app_args=("backfill",), clients=aws, out=io.StringIO())


def test_add_step_refuses_more_driver_attempts_than_the_cluster_s_yarn_allows(aws: Clients, launched: tuple):
    _, cluster_id = launched
    cfg = prod_config("emr.spark.max_app_attempts=6")
    with pytest.raises(LaunchError, match=r"start a driver 4 times .*max_app_attempts is 6"):
        add_step(cfg, cluster_id, app_args=("backfill",), clients=aws, out=io.StringIO())


def test_stop_force_cancels_the_step_and_kills_its_yarn_application(aws: Clients, launched: tuple):
    cfg, cluster_id = launched
    step_id = _step_named(aws, cluster_id, "mediapulse-stream")["Id"]
    clients, recorder = _with_cancels(aws)

    def sleep(seconds: float) -> None:  # the kill step, run on the primary node, ends the application
        _set_step_state(cluster_id, _step_named(aws, cluster_id, "mediapulse-stream-kill")["Id"], "COMPLETED")

    out = io.StringIO()
    result = stop(cfg, force=True, clients=clients, out=out, sleep=sleep)

    assert recorder.cancels == [
        {"ClusterId": cluster_id, "StepIds": [step_id], "StepCancellationOption": "SEND_INTERRUPT"}
    ]
    kill = _step_named(aws, cluster_id, "mediapulse-stream-kill")
    assert kill["Config"]["Args"] == [
        "/opt/mediapulse/venv/bin/python", "-m", "bootstrap.yarn_kill", "--tag", "mediapulse-stream",
    ]  # fmt: skip
    assert (result.step_id, result.kill_step_id, result.outcome, result.ok) == (
        step_id,
        kill["Id"],
        "killed",
        True,
    )
    assert "no YARN application tagged 'mediapulse-stream' is left" in out.getvalue()


def test_stop_force_reports_a_kill_that_failed(aws: Clients, launched: tuple):
    cfg, cluster_id = launched
    clients, recorder = _with_cancels(aws)

    def sleep(seconds: float) -> None:
        _set_step_state(cluster_id, _step_named(aws, cluster_id, "mediapulse-stream-kill")["Id"], "FAILED")

    out = io.StringIO()
    result = stop(cfg, force=True, terminate_process=True, clients=clients, out=out, sleep=sleep)
    assert recorder.cancels[0]["StepCancellationOption"] == "TERMINATE_PROCESS"
    assert (result.outcome, result.ok) == ("kill-failed", False)
    assert "the driver may still run" in out.getvalue()


def test_stop_force_without_a_running_step_still_ends_an_orphaned_driver(aws: Clients, launched: tuple):
    cfg, cluster_id = launched
    _set_step_state(cluster_id, _step_named(aws, cluster_id, "mediapulse-stream")["Id"], "CANCELLED")
    clients, recorder = _with_cancels(aws)

    def sleep(seconds: float) -> None:
        _set_step_state(cluster_id, _step_named(aws, cluster_id, "mediapulse-stream-kill")["Id"], "COMPLETED")

    result = stop(cfg, force=True, clients=clients, out=io.StringIO(), sleep=sleep)
    assert recorder.cancels == []
    assert (result.step_id, result.outcome) == (None, "killed")


def test_no_new_stream_starts_while_the_old_driver_is_being_killed(aws: Clients, launched: tuple):
    cfg, cluster_id = launched
    clients, _ = _with_cancels(aws)
    result = stop(cfg, force=True, timeout=0, clients=clients, out=io.StringIO(), sleep=lambda _: None)
    assert (result.outcome, result.ok) == ("timeout", False)  # the kill step has not run yet
    with pytest.raises(LaunchError, match="is being ended"):
        add_step(cfg, cluster_id, clients=aws, out=io.StringIO())
    _set_step_state(cluster_id, str(result.kill_step_id), "COMPLETED")
    restarted = add_step(cfg, cluster_id, clients=aws, out=io.StringIO())
    assert _step_named(aws, cluster_id, "mediapulse-stream-kill")["Id"] == result.kill_step_id
    assert restarted.step_id != result.step_id
