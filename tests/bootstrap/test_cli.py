from __future__ import annotations

import json
from pathlib import Path

import pytest

from bootstrap.aws import Clients
from bootstrap.cli import main
from tests.bootstrap.conftest import PROD, REGION, ROOT

CONFIG = ("--config", str(PROD))


def test_plan_prints_shards_and_costs(capsys: pytest.CaptureFixture[str]):
    assert main(["emr", "plan", *CONFIG, "--events-per-second", "50000"]) == 0
    out = capsys.readouterr().out
    assert "kinesis: 65 shards" in out and "monthly cost" in out


def test_policies_write_one_file_per_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["emr", "policies", *CONFIG, "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["emr-instance-profile.json", "redshift-copy-role-trust.json", "redshift-copy-role.json"]
    assert sorted(capsys.readouterr().out.split()) == [str(tmp_path / name) for name in names]


def test_launch_dry_run_prints_json_and_spark_submit(capsys: pytest.CaptureFixture[str]):
    assert main(["emr", "launch", *CONFIG, "--dry-run", "--set", "emr.lifecycle=transient"]) == 0
    out = capsys.readouterr().out
    request = json.loads(out.split("\n# the step runs:\n")[0])
    assert request["Instances"]["KeepJobFlowAliveWhenNoSteps"] is False
    assert "spark-submit --deploy-mode cluster" in out


def test_the_app_cli_dispatches_emr_commands(capsys: pytest.CaptureFixture[str]):
    from streaming.cli import main as app_main

    assert app_main(["emr", "plan", *CONFIG, "--events-per-second", "1000"]) == 0
    assert "kinesis:" in capsys.readouterr().out


def test_a_config_without_emr_section_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]):
    assert (
        main(["emr", "plan", "--config", str(ROOT / "config" / "local.yaml"), "--events-per-second", "1"])
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no emr: section" in err and "Traceback" not in err


def test_a_bad_override_names_the_key(capsys: pytest.CaptureFixture[str]):
    assert main(["emr", "policies", *CONFIG, "--set", "emr.fleets.core.spot_capacity=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "emr.fleets" in err and "fleets.core must be on-demand" in err


def test_launch_of_an_unpackaged_release_fails_in_one_line(aws: Clients, capsys: pytest.CaptureFixture[str]):
    aws("s3").create_bucket(
        Bucket="mediapulse-prod-artifacts", CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    assert main(["emr", "launch", *CONFIG]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run `mediapulse emr package` first" in err


def test_aws_errors_are_one_line(aws: Clients, capsys: pytest.CaptureFixture[str]):
    assert main(["emr", "status", *CONFIG, "--cluster-id", "j-NOSUCH"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "AWS DescribeCluster failed" in err


def test_stop_refuses_a_timeout_that_is_not_a_duration():
    with pytest.raises(SystemExit):
        main(["emr", "stop", *CONFIG, "--timeout", "soon"])


def test_package_takes_a_wheelhouse_built_earlier(
    built_wheel: Path, prod_wheelhouse: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    reuse = ("--no-upload", "--wheel", str(built_wheel), "--wheelhouse", str(prod_wheelhouse))
    assert main(["emr", "package", *CONFIG, *reuse, "--dist", str(tmp_path / "a")]) == 0
    assert "release s3://mediapulse-prod-artifacts/emr/0.1.0" in capsys.readouterr().out
    # the same wheelhouse does not fit x86_64 nodes: one line, exit 1
    x86 = ("--set", "emr.wheelhouse.architecture=x86_64")
    assert main(["emr", "package", *CONFIG, *reuse, *x86, "--dist", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the nodes run x86_64, CPython 3.11.6, glibc 2.34" in err
