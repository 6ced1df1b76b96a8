from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

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


def _package(aws: Clients, wheel: Path, tmp_path: Path) -> tuple[AppConfig, str, PackageResult]:
    key_arn = aws("kms").create_key(Description="mediapulse test")["KeyMetadata"]["Arn"]
    s3 = aws("s3")
    for bucket in BUCKETS:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    cfg = prod_config(f"emr.kms_key_arn={key_arn}")
    result = package(cfg, PROD, dist_dir=tmp_path / "dist", wheel=wheel, clients=aws, out=io.StringIO())
    return cfg, key_arn, result


@pytest.fixture
def packaged(aws: Clients, built_wheel: Path, tmp_path: Path) -> tuple[AppConfig, str, PackageResult]:
    return _package(aws, built_wheel, tmp_path)


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
        "constraints.txt",
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


def test_stop_force_cancels_the_step():
    emr = boto3.client("emr", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(emr) as stubbed:
        stubbed.add_response(
            "list_steps",
            {"Steps": [{"Id": "s-NEW", "Name": "mediapulse-stream", "Status": {"State": "RUNNING"}}]},
            {"ClusterId": "j-1", "StepStates": ["PENDING", "RUNNING"]},
        )
        stubbed.add_response(
            "cancel_steps",
            {"CancelStepsInfoList": [{"StepId": "s-NEW", "Status": "SUBMITTED"}]},
            {"ClusterId": "j-1", "StepIds": ["s-NEW"], "StepCancellationOption": "SEND_INTERRUPT"},
        )
        result = stop(prod_config(), "j-1", force=True, clients=lambda _: emr, out=io.StringIO())  # type: ignore[arg-type]
    assert (result.step_id, result.outcome) == ("s-NEW", "cancel-requested")
