from __future__ import annotations

import json
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from bootstrap.cluster import (
    ROCKSDB_PROVIDER,
    Release,
    build_kill_step,
    build_run_job_flow_request,
    build_security_configuration,
    build_step,
    stop_marker_uri,
)
from bootstrap.settings import emr_settings
from tests.bootstrap.conftest import prod_config, staging_config

CONFIG_URI = "s3://mediapulse-prod-artifacts/emr/0.1.0/emr.yaml"
STAGING_URI = "s3://mediapulse-staging-artifacts/emr/0.1.0/emr-staging.yaml"


def _emr_input_shape(operation: str) -> Any:
    return botocore.session.get_session().get_service_model("emr").operation_model(operation).input_shape


def _conf(args: list[str]) -> dict[str, str]:
    pairs = [args[i + 1] for i, arg in enumerate(args) if arg == "--conf"]
    return dict(pair.split("=", 1) for pair in pairs)


def _fleet(request: dict[str, Any], kind: str) -> dict[str, Any]:
    (fleet,) = [f for f in request["Instances"]["InstanceFleets"] if f["InstanceFleetType"] == kind]
    return fleet


def test_request_matches_the_emr_api_model():
    for cfg, uri in ((prod_config(), CONFIG_URI), (staging_config(), STAGING_URI)):
        request = build_run_job_flow_request(cfg, uri)
        report = ParamValidator().validate(request, _emr_input_shape("RunJobFlow"))
        assert not report.has_errors(), report.generate_report()


def test_release_label_applications_and_logging_come_from_config():
    request = build_run_job_flow_request(prod_config("emr.release_label=emr-spark-8.0.1"), CONFIG_URI)
    assert request["ReleaseLabel"] == "emr-spark-8.0.1"
    assert request["Applications"] == [{"Name": "Spark"}]
    assert request["LogUri"] == "s3://mediapulse-prod-logs/emr/"
    assert request["LogEncryptionKmsKeyId"].startswith("arn:aws:kms:eu-west-1:123456789012:key/")
    assert request["SecurityConfiguration"] == "mediapulse-prod-v1"
    assert request["VisibleToAllUsers"] is True
    assert request["ServiceRole"] == "mediapulse-emr-service"
    assert request["JobFlowRole"] == "mediapulse-emr-instance"
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags["env"] == "prod" and tags["version"] == "0.1.0" and tags["lifecycle"] == "long-running"


def test_primary_and_core_fleets_are_on_demand():
    request = build_run_job_flow_request(prod_config(), CONFIG_URI)
    primary, core = _fleet(request, "MASTER"), _fleet(request, "CORE")
    assert (primary["TargetOnDemandCapacity"], primary["TargetSpotCapacity"]) == (1, 0)
    assert (core["TargetOnDemandCapacity"], core["TargetSpotCapacity"]) == (2, 0)
    assert [t["InstanceType"] for t in core["InstanceTypeConfigs"]] == ["r7g.2xlarge", "r6g.2xlarge"]
    for fleet in (primary, core):
        assert "SpotSpecification" not in fleet["LaunchSpecifications"]
    volume = core["InstanceTypeConfigs"][0]["EbsConfiguration"]["EbsBlockDeviceConfigs"][0]
    assert volume["VolumeSpecification"] == {"VolumeType": "gp3", "SizeInGB": 128}


def test_task_fleet_is_spot_with_capacity_optimized_allocation():
    task = _fleet(build_run_job_flow_request(prod_config(), CONFIG_URI), "TASK")
    assert (task["TargetOnDemandCapacity"], task["TargetSpotCapacity"]) == (0, 4)
    spot = task["LaunchSpecifications"]["SpotSpecification"]
    assert spot == {
        "TimeoutDurationMinutes": 20,
        "TimeoutAction": "SWITCH_TO_ON_DEMAND",
        "AllocationStrategy": "capacity-optimized",
    }
    assert task["LaunchSpecifications"]["OnDemandSpecification"] == {"AllocationStrategy": "lowest-price"}
    weights = {t["InstanceType"]: t["WeightedCapacity"] for t in task["InstanceTypeConfigs"]}
    assert weights == {"m7g.2xlarge": 1, "m6g.2xlarge": 1, "r7g.2xlarge": 1, "m7g.4xlarge": 2}


def test_bootstrap_action_installs_the_release_into_the_app_s_virtualenv():
    (action,) = build_run_job_flow_request(prod_config(), CONFIG_URI)["BootstrapActions"]
    script = action["ScriptBootstrapAction"]
    assert script["Path"] == "s3://mediapulse-prod-artifacts/emr/0.1.0/install.sh"
    assert script["Args"] == [
        "--artifacts", "s3://mediapulse-prod-artifacts/emr/0.1.0",
        "--wheel", "mediapulse-0.1.0-py3-none-any.whl",
        "--wheelhouse", "wheelhouse.tar",
        "--constraints", "constraints.txt",
        "--python", "/usr/bin/python3.11",
        "--venv", "/opt/mediapulse/venv",
    ]  # fmt: skip


def test_spark_runs_the_virtualenv_s_python_on_every_node():
    request = build_run_job_flow_request(prod_config("emr.venv=/opt/mp/env"), CONFIG_URI)
    (spark_env,) = [c for c in request["Configurations"] if c["Classification"] == "spark-env"]
    assert spark_env["Configurations"][0]["Properties"] == {
        "PYSPARK_PYTHON": "/opt/mp/env/bin/python",
        "PYSPARK_DRIVER_PYTHON": "/opt/mp/env/bin/python",
    }
    conf = _conf(request["Steps"][0]["HadoopJarStep"]["Args"])
    for key in (
        "spark.pyspark.python",
        "spark.pyspark.driver.python",
        "spark.yarn.appMasterEnv.PYSPARK_PYTHON",
        "spark.executorEnv.PYSPARK_PYTHON",
    ):
        assert conf[key] == "/opt/mp/env/bin/python", key


def _yarn_site(request: dict[str, Any]) -> dict[str, str]:
    (yarn_site,) = [c for c in request["Configurations"] if c["Classification"] == "yarn-site"]
    return yarn_site["Properties"]


@pytest.mark.parametrize("attempts", [1, 4, 7])
def test_yarn_allows_as_many_driver_attempts_as_spark_asks_for(attempts: int):
    request = build_run_job_flow_request(prod_config(f"emr.spark.max_app_attempts={attempts}"), CONFIG_URI)
    conf = _conf(request["Steps"][0]["HadoopJarStep"]["Args"])
    assert conf["spark.yarn.maxAppAttempts"] == str(attempts)
    assert _yarn_site(request)["yarn.resourcemanager.am.max-attempts"] == str(attempts)


def test_each_step_tags_its_yarn_application_with_its_name():
    release = Release.from_config_uri(CONFIG_URI)
    stream = build_step(prod_config(), release)
    backfill = build_step(prod_config(), release, ("backfill", "--from", "a", "--to", "b"))
    named = build_step(prod_config(), release, name="Mediapulse Rerun")
    assert _conf(stream["HadoopJarStep"]["Args"])["spark.yarn.tags"] == "mediapulse-stream"
    assert _conf(backfill["HadoopJarStep"]["Args"])["spark.yarn.tags"] == "mediapulse-stream-backfill"
    assert _conf(named["HadoopJarStep"]["Args"])["spark.yarn.tags"] == "mediapulse-rerun"


def test_the_kill_step_ends_the_tagged_yarn_application_from_the_virtualenv():
    step = build_kill_step(emr_settings(prod_config().emr), "mediapulse-stream")
    assert step["Name"] == "mediapulse-stream-kill"
    assert step["ActionOnFailure"] == "CONTINUE"
    assert step["HadoopJarStep"] == {
        "Jar": "command-runner.jar",
        "Args": [
            "/opt/mediapulse/venv/bin/python", "-m", "bootstrap.yarn_kill", "--tag", "mediapulse-stream",
        ],
    }  # fmt: skip
    report = ParamValidator().validate(
        {"JobFlowId": "j-1", "Steps": [step]}, _emr_input_shape("AddJobFlowSteps")
    )
    assert not report.has_errors(), report.generate_report()


def test_configured_tags_cannot_hide_the_release_version():
    request = build_run_job_flow_request(prod_config("emr.tags={version: '9.9', env: prod}"), CONFIG_URI)
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert (tags["version"], tags["env"]) == ("0.1.0", "prod")


def test_step_runs_spark_submit_in_cluster_mode_with_streaming_settings():
    (step,) = build_run_job_flow_request(prod_config(), CONFIG_URI)["Steps"]
    assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
    args = step["HadoopJarStep"]["Args"]
    assert args[:5] == ["spark-submit", "--deploy-mode", "cluster", "--master", "yarn"]
    conf = _conf(args)
    assert conf["spark.sql.streaming.stateStore.providerClass"] == ROCKSDB_PROVIDER
    assert conf["spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled"] == "true"
    assert conf["spark.speculation"] == "false"
    assert conf["spark.sql.streaming.checkpointLocation"] == "s3://mediapulse-prod-checkpoints/engagement"
    assert conf["spark.dynamicAllocation.enabled"] == "true"
    assert (conf["spark.dynamicAllocation.minExecutors"], conf["spark.dynamicAllocation.maxExecutors"]) == (
        "4",
        "24",
    )
    assert (conf["spark.executor.memory"], conf["spark.executor.cores"]) == ("8g", "4")
    assert conf["spark.yarn.maxAppAttempts"] == "4"
    assert conf["spark.yarn.am.attemptFailuresValidityInterval"] == "3600s"
    assert conf["spark.pyspark.python"] == "/opt/mediapulse/venv/bin/python"
    files = args[args.index("--files") + 1]
    assert files == CONFIG_URI
    assert args[args.index("--jars") + 1] == "s3://mediapulse-prod-artifacts/emr/0.1.0/mediapulse-validator.jar"
    entry = args.index("s3://mediapulse-prod-artifacts/emr/0.1.0/emr_entry.py")
    assert args[entry + 1 :] == [
        "run", "--config", "emr.yaml",
        "--set", "run.stop_marker=s3://mediapulse-prod-checkpoints/engagement/_STOP",
    ]  # fmt: skip


def test_extra_spark_conf_is_passed_through():
    cfg = prod_config("emr.spark.conf={spark.sql.shuffle.partitions: '96'}")
    (step,) = build_run_job_flow_request(cfg, CONFIG_URI)["Steps"]
    assert _conf(step["HadoopJarStep"]["Args"])["spark.sql.shuffle.partitions"] == "96"


def test_long_running_cluster_waits_and_is_protected():
    request = build_run_job_flow_request(prod_config(), CONFIG_URI)
    assert request["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    assert request["Instances"]["TerminationProtected"] is True
    assert "AutoTerminationPolicy" not in request
    assert request["Steps"][0]["ActionOnFailure"] == "CONTINUE"


def test_transient_cluster_ends_with_its_steps():
    request = build_run_job_flow_request(staging_config(), STAGING_URI)
    assert request["Instances"]["KeepJobFlowAliveWhenNoSteps"] is False
    assert request["Instances"]["TerminationProtected"] is False
    assert request["AutoTerminationPolicy"] == {"IdleTimeout": 30 * 60}
    assert request["Steps"][0]["ActionOnFailure"] == "TERMINATE_CLUSTER"
    args = request["Steps"][0]["HadoopJarStep"]["Args"]
    assert args[args.index("run") :][:4] == ["run", "--config", "emr-staging.yaml", "--available-now"]


def test_lifecycle_can_be_switched_by_override():
    request = build_run_job_flow_request(prod_config("emr.lifecycle=transient"), CONFIG_URI)
    assert request["Instances"]["KeepJobFlowAliveWhenNoSteps"] is False
    assert request["AutoTerminationPolicy"] == {"IdleTimeout": 3600}


def test_a_backfill_step_gets_its_own_name_and_no_stop_marker():
    release = Release.from_config_uri(CONFIG_URI)
    step = build_step(
        prod_config(), release, ("backfill", "--from", "2026-11-01T00:00:00Z", "--to", "2026-11-02")
    )
    assert step["Name"] == "mediapulse-stream-backfill"
    args = step["HadoopJarStep"]["Args"]
    assert args[-7:] == [
        "backfill",
        "--config",
        "emr.yaml",
        "--from",
        "2026-11-01T00:00:00Z",
        "--to",
        "2026-11-02",
    ]


def test_stop_marker_defaults_under_the_checkpoint_and_follows_run_stop_marker():
    assert stop_marker_uri(prod_config()) == "s3://mediapulse-prod-checkpoints/engagement/_STOP"
    assert stop_marker_uri(prod_config("run.stop_marker=s3://ops/stop-now")) == "s3://ops/stop-now"


def test_security_configuration_encrypts_s3_disks_and_transit_with_the_key():
    cfg = prod_config()
    key = cfg.emr["kms_key_arn"] if isinstance(cfg.emr, dict) else cfg.emr.kms_key_arn
    document = build_security_configuration(cfg)
    encryption = document["EncryptionConfiguration"]
    assert encryption["EnableAtRestEncryption"] is True and encryption["EnableInTransitEncryption"] is True
    at_rest = encryption["AtRestEncryptionConfiguration"]
    assert at_rest["S3EncryptionConfiguration"] == {"EncryptionMode": "SSE-KMS", "AwsKmsKey": key}
    assert at_rest["LocalDiskEncryptionConfiguration"] == {
        "EncryptionKeyProviderType": "AwsKms",
        "AwsKmsKey": key,
        "EnableEbsEncryption": True,
    }
    assert encryption["InTransitEncryptionConfiguration"]["TLSCertificateConfiguration"] == {
        "CertificateProviderType": "PEM",
        "S3Object": "s3://mediapulse-prod-artifacts/tls/emr-certificates.zip",
    }
    json.dumps(document)  # what CreateSecurityConfiguration receives


def test_custom_certificate_provider_names_its_class():
    cfg = prod_config(
        "emr.tls.certificate_provider=Custom",
        "emr.tls.certificate_provider_class=com.example.CertificateProvider",
    )
    tls = build_security_configuration(cfg)["EncryptionConfiguration"]["InTransitEncryptionConfiguration"]
    assert tls["TLSCertificateConfiguration"]["CertificateProviderClass"] == "com.example.CertificateProvider"


@pytest.mark.parametrize("uri", ["s3://bucket/emr.yaml", "not-s3://a/b/c.yaml"])
def test_release_refuses_a_config_uri_without_a_version(uri: str):
    with pytest.raises(ValueError):
        Release.from_config_uri(uri)


def test_the_bootstrap_action_takes_no_package_index():
    (action,) = build_run_job_flow_request(prod_config(), CONFIG_URI)["BootstrapActions"]
    args = action["ScriptBootstrapAction"]["Args"]
    assert not {"--pip-args", "--index-url", "--extra-index-url"} & set(args)


def test_the_driver_is_kept_off_spot_nodes_unless_told_otherwise():
    labels = _yarn_site(build_run_job_flow_request(prod_config(), CONFIG_URI))
    assert labels["yarn.node-labels.enabled"] == "true"
    assert labels["yarn.node-labels.am.default-node-label-expression"] == "ON_DEMAND"
    anywhere = _yarn_site(
        build_run_job_flow_request(prod_config("emr.driver_placement=anywhere"), CONFIG_URI)
    )
    assert anywhere == {"yarn.resourcemanager.am.max-attempts": "4"}
