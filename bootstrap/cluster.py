"""The EMR requests mediapulse sends, built as plain dicts from the configuration (no AWS calls here).

``build_run_job_flow_request`` is the whole cluster: release, fleets, bootstrap action, security
configuration, lifecycle and the app's step. ``build_security_configuration`` is the encryption posture
the cluster names. Both are pure, so ``emr launch --dry-run`` prints exactly what ``launch`` sends.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bootstrap.settings import EmrConfig, FleetConfig, TaskFleetConfig, emr_settings

if TYPE_CHECKING:
    from streaming.config import AppConfig

PROJECT = "mediapulse"
INSTALL_SCRIPT = "install.sh"
ENTRY_SCRIPT = "emr_entry.py"
CONSTRAINTS = "constraints.txt"
WHEELHOUSE = "wheelhouse.tar"
# The record validator, taken from the wheel: spark-submit puts it on the driver's and executors' classpath.
VALIDATOR_JAR = "mediapulse-validator.jar"
AM_MAX_ATTEMPTS = "yarn.resourcemanager.am.max-attempts"
KILL_STEP_SUFFIX = "-kill"
ROCKSDB_PROVIDER = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"


def wheel_filename(version: str) -> str:
    """The wheel the build backend writes for this project (pure Python, any platform)."""
    return f"{PROJECT}-{version}-py3-none-any.whl"


@dataclass(frozen=True)
class Release:
    """Where one packaged version lives: ``<artifacts>/<version>/{wheel, constraints, scripts, config}``."""

    artifacts: str
    version: str
    config_name: str

    @classmethod
    def from_config_uri(cls, config_uri: str) -> Release:
        prefix, config_name = config_uri.rstrip("/").rsplit("/", 1)
        artifacts, version = prefix.rsplit("/", 1)
        if not artifacts.startswith("s3://") or not version or not config_name:
            raise ValueError(f"not an uploaded config URI <artifacts>/<version>/<name>.yaml: {config_uri!r}")
        return cls(artifacts=artifacts, version=version, config_name=config_name)

    @property
    def prefix(self) -> str:
        return f"{self.artifacts}/{self.version}"

    @property
    def wheel_name(self) -> str:
        return wheel_filename(self.version)

    def uri(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    @property
    def config_uri(self) -> str:
        return self.uri(self.config_name)


def stop_marker_uri(cfg: AppConfig) -> str:
    """Where ``emr stop`` writes the marker the app polls between micro-batches.

    The one place that knows the app's side of the contract: ``run.stop_marker`` when the config sets
    it, else ``<checkpoint.path>/_STOP``. The app polls only a configured marker, so the step passes this
    one to ``mediapulse run`` with ``--set run.stop_marker=...``.
    """
    return cfg.run.stop_marker or f"{cfg.checkpoint.path.rstrip('/')}/_STOP"


def yarn_tag(step_name: str) -> str:
    """The YARN application tag of a step's Spark application: the step name, as YARN stores tags.

    YARN lower-cases tags and caps them at 100 characters; ``emr stop --force`` finds the application
    to end by this tag (``yarn application -list -appTags``).
    """
    return re.sub(r"[^a-z0-9._-]", "-", step_name.lower())[:100]


def kill_step_name(step_name: str) -> str:
    return f"{step_name}{KILL_STEP_SUFFIX}"


def _instance_type_configs(fleet: FleetConfig, spot: bool) -> list[dict[str, Any]]:
    configs = []
    for itype in fleet.instance_types:
        config: dict[str, Any] = {"InstanceType": itype.type, "WeightedCapacity": itype.weight}
        if spot:
            config["BidPriceAsPercentageOfOnDemandPrice"] = itype.max_spot_price_percent or 100.0
        if fleet.ebs_gib:
            volume = {
                "VolumeSpecification": {"VolumeType": "gp3", "SizeInGB": fleet.ebs_gib},
                "VolumesPerInstance": 1,
            }
            config["EbsConfiguration"] = {"EbsOptimized": True, "EbsBlockDeviceConfigs": [volume]}
        configs.append(config)
    return configs


def _on_demand_fleet(kind: str, name: str, fleet: FleetConfig) -> dict[str, Any]:
    return {
        "Name": name,
        "InstanceFleetType": kind,
        "TargetOnDemandCapacity": fleet.on_demand_capacity,
        "TargetSpotCapacity": 0,
        "InstanceTypeConfigs": _instance_type_configs(fleet, spot=False),
        "LaunchSpecifications": {"OnDemandSpecification": {"AllocationStrategy": "lowest-price"}},
    }


def _task_fleet(fleet: TaskFleetConfig) -> dict[str, Any]:
    return {
        "Name": "task",
        "InstanceFleetType": "TASK",
        "TargetOnDemandCapacity": fleet.on_demand_capacity,
        "TargetSpotCapacity": fleet.spot_capacity,
        "InstanceTypeConfigs": _instance_type_configs(fleet, spot=True),
        "LaunchSpecifications": {
            "SpotSpecification": {
                "TimeoutDurationMinutes": max(5, round(fleet.spot_timeout.total_seconds() / 60)),
                "TimeoutAction": fleet.spot_timeout_action,
                "AllocationStrategy": fleet.spot_allocation_strategy,
            },
            "OnDemandSpecification": {"AllocationStrategy": "lowest-price"},
        },
    }


def _default_step_name(emr: EmrConfig, command: tuple[str, ...]) -> str:
    return emr.step_name if command == emr.app_args else f"{emr.step_name}-{command[0]}"


def spark_submit_args(
    cfg: AppConfig,
    release: Release,
    app_args: tuple[str, ...] | None = None,
    step_name: str | None = None,
) -> list[str]:
    """The ``spark-submit`` command line of the app's step (``command-runner.jar`` runs it)."""
    emr = emr_settings(cfg.emr)
    spark = emr.spark
    validity = int(spark.attempt_failures_validity.total_seconds())
    command = tuple(app_args) if app_args else emr.app_args
    conf: dict[str, str] = {
        # YARN restarts a failed driver; the query resumes from its checkpoint. Failures older than the
        # validity interval are forgotten, so a stream that fails once a day is not killed on day four.
        # YARN caps this at yarn.resourcemanager.am.max-attempts, which the cluster raises to match.
        "spark.yarn.maxAppAttempts": str(spark.max_app_attempts),
        "spark.yarn.am.attemptFailuresValidityInterval": f"{validity}s",
        "spark.yarn.submit.waitAppCompletion": "true",
        # Speculative copies of a foreachBatch task would write sinks twice.
        "spark.speculation": "false",
        "spark.sql.streaming.stateStore.providerClass": ROCKSDB_PROVIDER,
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        "spark.sql.streaming.checkpointLocation": cfg.checkpoint.path,
        "spark.dynamicAllocation.enabled": "true",
        "spark.dynamicAllocation.minExecutors": str(spark.dynamic_allocation_min),
        "spark.dynamicAllocation.maxExecutors": str(spark.dynamic_allocation_max),
        "spark.executor.memory": spark.executor_memory,
        "spark.executor.cores": str(spark.executor_cores),
        "spark.driver.memory": spark.driver_memory,
        # The app's virtualenv, which install.sh filled on every node: driver and executors alike.
        "spark.pyspark.python": emr.venv_python,
        "spark.pyspark.driver.python": emr.venv_python,
        "spark.yarn.appMasterEnv.PYSPARK_PYTHON": emr.venv_python,
        "spark.executorEnv.PYSPARK_PYTHON": emr.venv_python,
        # `emr stop --force` ends the YARN application by this tag, not only the step's spark-submit.
        "spark.yarn.tags": yarn_tag(step_name or _default_step_name(emr, command)),
    }
    conf.update(spark.conf)
    args = ["spark-submit", "--deploy-mode", "cluster", "--master", "yarn", "--name", cfg.app_name]
    # YARN copies the config next to the driver, so the app reads it by its bare name.
    args += ["--files", release.config_uri, "--jars", release.uri(VALIDATOR_JAR)]
    for key, value in conf.items():
        args += ["--conf", f"{key}={value}"]
    args += [release.uri(ENTRY_SCRIPT), command[0], "--config", release.config_name, *command[1:]]
    if command[0] == "run":
        # The app polls the marker only when run.stop_marker is set: set it to what `emr stop` writes.
        args += ["--set", f"run.stop_marker={stop_marker_uri(cfg)}"]
    return args


def spark_submit_line(args: list[str]) -> str:
    """The step's command as one shell line, for people to read and paste."""
    return shlex.join(args)


def build_step(
    cfg: AppConfig, release: Release, app_args: tuple[str, ...] | None = None, name: str | None = None
) -> dict[str, Any]:
    """One ``StepConfig``: the app under ``spark-submit`` via ``command-runner.jar``."""
    emr = emr_settings(cfg.emr)
    command = tuple(app_args) if app_args else emr.app_args
    step_name = name or _default_step_name(emr, command)
    return {
        "Name": step_name,
        # A long-running cluster outlives a failed step (fix, then add-step); a transient one does not.
        "ActionOnFailure": "CONTINUE" if emr.lifecycle == "long-running" else "TERMINATE_CLUSTER",
        "HadoopJarStep": {
            "Jar": "command-runner.jar",
            "Args": spark_submit_args(cfg, release, command, step_name),
        },
    }


def build_kill_step(emr: EmrConfig, step_name: str) -> dict[str, Any]:
    """A step that ends every live YARN application tagged for ``step_name`` and waits until they end.

    Cancelling a step stops its ``spark-submit`` client; in cluster mode the driver lives on in YARN and
    would share the checkpoint with the next run. This step, run by ``emr stop --force``, kills it.
    """
    return {
        "Name": kill_step_name(step_name),
        "ActionOnFailure": "CONTINUE",  # a failed kill is reported by `emr stop`, never ends the cluster
        "HadoopJarStep": {
            "Jar": "command-runner.jar",
            "Args": [emr.venv_python, "-m", "bootstrap.yarn_kill", "--tag", yarn_tag(step_name)],
        },
    }


def bootstrap_action(emr: EmrConfig, release: Release) -> dict[str, Any]:
    args = [
        *("--artifacts", release.prefix),
        *("--wheel", release.wheel_name),
        *("--wheelhouse", WHEELHOUSE),
        *("--constraints", CONSTRAINTS),
        *("--python", emr.python),
        *("--venv", emr.venv),
    ]
    return {
        "Name": "install-mediapulse",
        "ScriptBootstrapAction": {"Path": release.uri(INSTALL_SCRIPT), "Args": args},
    }


def yarn_site(emr: EmrConfig) -> dict[str, str]:
    """The cluster's ``yarn-site`` properties."""
    properties = {
        # YARN's own cap on ApplicationMaster attempts (default 2) silently lowers spark.yarn.maxAppAttempts.
        AM_MAX_ATTEMPTS: str(emr.spark.max_app_attempts),
    }
    if emr.driver_placement != "anywhere":
        # YARN node labels keep ApplicationMasters (the driver, in cluster mode) off spot task nodes.
        properties["yarn.node-labels.enabled"] = "true"
        properties["yarn.node-labels.am.default-node-label-expression"] = emr.driver_placement
    return properties


def build_run_job_flow_request(cfg: AppConfig, config_uri: str) -> dict[str, Any]:
    """The complete ``RunJobFlow`` request for the configured cluster and the app's step."""
    emr = emr_settings(cfg.emr)
    release = Release.from_config_uri(config_uri)
    fleets = [
        _on_demand_fleet("MASTER", "primary", emr.fleets.primary),
        _on_demand_fleet("CORE", "core", emr.fleets.core),
    ]
    if emr.fleets.task is not None:
        fleets.append(_task_fleet(emr.fleets.task))
    long_running = emr.lifecycle == "long-running"
    instances: dict[str, Any] = {
        "InstanceFleets": fleets,
        "Ec2SubnetIds": list(emr.subnet_ids),
        # long-running: the cluster waits for the next step and refuses accidental termination.
        # transient: the cluster ends when its steps do.
        "KeepJobFlowAliveWhenNoSteps": long_running,
        "TerminationProtected": long_running,
    }
    if emr.key_name:
        instances["Ec2KeyName"] = emr.key_name
    # `add-step` reads the version tag to tell which release the nodes hold: emr.tags cannot override it.
    tags = {**emr.tags, "app": PROJECT, "lifecycle": emr.lifecycle, "version": release.version}
    request: dict[str, Any] = {
        "Name": emr.name,
        "ReleaseLabel": emr.release_label,
        "LogUri": emr.log_uri + "/",
        "LogEncryptionKmsKeyId": emr.kms_key_arn,
        "Applications": [{"Name": "Spark"}],
        "Instances": instances,
        "BootstrapActions": [bootstrap_action(emr, release)],
        "Steps": [build_step(cfg, release)],
        "Configurations": [
            {
                "Classification": "spark-env",
                "Properties": {},
                "Configurations": [
                    {
                        "Classification": "export",
                        "Properties": {
                            "PYSPARK_PYTHON": emr.venv_python,
                            "PYSPARK_DRIVER_PYTHON": emr.venv_python,
                        },
                    }
                ],
            },
            {"Classification": "yarn-site", "Properties": yarn_site(emr)},
        ],
        "SecurityConfiguration": emr.security_configuration,
        "ServiceRole": emr.service_role,
        "JobFlowRole": emr.instance_profile,
        "VisibleToAllUsers": True,
        "StepConcurrencyLevel": emr.step_concurrency_level,
        "Tags": [{"Key": key, "Value": value} for key, value in tags.items()],
    }
    if not long_running:
        request["AutoTerminationPolicy"] = {"IdleTimeout": int(emr.idle_timeout.total_seconds())}
    return request


def build_security_configuration(cfg: AppConfig) -> dict[str, Any]:
    """The security configuration's JSON: SSE-KMS for EMRFS, KMS local disks (and EBS), TLS in transit."""
    emr = emr_settings(cfg.emr)
    tls: dict[str, Any] = {
        "CertificateProviderType": emr.tls.certificate_provider,
        "S3Object": emr.tls.certificates_s3_object,
    }
    if emr.tls.certificate_provider == "Custom":
        tls["CertificateProviderClass"] = emr.tls.certificate_provider_class
    return {
        "EncryptionConfiguration": {
            "EnableAtRestEncryption": True,
            "EnableInTransitEncryption": True,
            "AtRestEncryptionConfiguration": {
                "S3EncryptionConfiguration": {"EncryptionMode": "SSE-KMS", "AwsKmsKey": emr.kms_key_arn},
                "LocalDiskEncryptionConfiguration": {
                    "EncryptionKeyProviderType": "AwsKms",
                    "AwsKmsKey": emr.kms_key_arn,
                    "EnableEbsEncryption": True,
                },
            },
            "InTransitEncryptionConfiguration": {"TLSCertificateConfiguration": tls},
        }
    }


def s3_split(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, posixpath.normpath(key).lstrip("/") if key.strip("/") else ""
