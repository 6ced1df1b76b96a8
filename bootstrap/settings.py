"""The ``emr:`` section of the configuration: how mediapulse is deployed on Amazon EMR (EC2).

One frozen pydantic tree, like :mod:`streaming.config`, which keeps the section as written:
:func:`emr_settings` validates it here, so the app's configuration does not depend on the deployer.
Nothing here is secret: roles, keys and secrets are referenced by name or ARN, never by value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from streaming.commands import UsageError
from streaming.durations import PositiveDuration as Duration

# The AWS runtime for Apache Spark release that ships Spark 4.0 on EMR on EC2 (Spark 4.0.2-amzn-0,
# Python 3.11-3.13, Corretto 17). The 7.x line ships Spark 3.5 and cannot run this app.
DEFAULT_RELEASE_LABEL = "emr-spark-8.0.0"

_ACCOUNT = re.compile(r"^\d{12}$")
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# An instance family: letters, a generation, then attribute letters ("m7gd", "c7i-flex", "is4gen").
_FAMILY = re.compile(r"^[a-z]+\d+(?P<attributes>[a-z0-9-]*)\.")
_VERSIONED_PYTHON = re.compile(r"python(?P<version>\d+\.\d+)$")
# spark-submit settings the app derives from first-class keys; a copy in spark.conf would disagree with them.
_DERIVED_SPARK_CONF = {
    "spark.yarn.maxAppAttempts": "spark.max_app_attempts",
    "spark.yarn.tags": "step_name",
    "spark.pyspark.python": "venv",
    "spark.pyspark.driver.python": "venv",
}

Architecture = Literal["x86_64", "aarch64"]


class EmrConfigError(UsageError, ValueError):
    """The ``emr:`` section is missing or invalid."""


def instance_architecture(instance_type: str) -> Architecture:
    """The CPU architecture of an EC2 instance type.

    Graviton families carry a ``g`` attribute (``m7g``, ``r6gd``, ``c7gn``, ``is4gen``; ``a1`` too); every
    other family is x86_64 (``m7i``, ``g5``, ``c7i-flex``).
    """
    if instance_type.startswith("a1."):
        return "aarch64"
    match = _FAMILY.match(instance_type)
    return "aarch64" if match and "g" in match["attributes"].split("-")[0] else "x86_64"


def _s3_uri(value: str) -> str:
    if not value.startswith("s3://") or len(value) <= len("s3://"):
        raise ValueError(f"expected an s3:// URI, got {value!r}")
    return value.rstrip("/")


S3Uri = Annotated[str, BeforeValidator(lambda v: _s3_uri(v) if isinstance(v, str) else v)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InstanceType(_Model):
    """One instance type of a fleet. ``weight`` is its share of the fleet's target capacity."""

    type: str = Field(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
    weight: int = Field(default=1, ge=1)
    # Spot only: the most to bid, as a percentage of the on-demand price (EMR's default is 100).
    max_spot_price_percent: float | None = Field(default=None, gt=0, le=100)


def _instance_types(value: Any) -> Any:
    """Accept ``[m7g.xlarge, {type: m6g.xlarge, weight: 1}]``: bare names are weight-1 types."""
    if isinstance(value, list | tuple):
        return [{"type": item} if isinstance(item, str) else item for item in value]
    return value


InstanceTypes = Annotated[
    tuple[InstanceType, ...], BeforeValidator(_instance_types), Field(min_length=1, max_length=30)
]


class FleetConfig(_Model):
    """One instance fleet. Capacities are in weight units (one unit per instance with weight 1)."""

    instance_types: InstanceTypes
    on_demand_capacity: int = Field(default=0, ge=0)
    spot_capacity: int = Field(default=0, ge=0)
    ebs_gib: int | None = Field(default=None, ge=1, le=16384)  # gp3 volume per instance (state, shuffle)


class TaskFleetConfig(FleetConfig):
    """The elastic fleet: spot capacity, with on-demand only as a floor if you want one."""

    spot_allocation_strategy: Literal[
        "capacity-optimized", "price-capacity-optimized", "capacity-optimized-prioritized", "lowest-price"
    ] = "capacity-optimized"
    spot_timeout: Duration = timedelta(minutes=20)
    spot_timeout_action: Literal["SWITCH_TO_ON_DEMAND", "TERMINATE_CLUSTER"] = "SWITCH_TO_ON_DEMAND"


class FleetsConfig(_Model):
    primary: FleetConfig
    core: FleetConfig
    task: TaskFleetConfig | None = None

    @model_validator(mode="after")
    def _on_demand_where_state_lives(self) -> FleetsConfig:
        # The primary node runs YARN's ResourceManager and HDFS's NameNode, core nodes hold HDFS: losing
        # either to a spot reclaim stalls or ends the stream, so both are on-demand.
        if self.primary.on_demand_capacity != 1 or self.primary.spot_capacity != 0:
            raise ValueError("fleets.primary must have on_demand_capacity 1 and spot_capacity 0")
        if self.primary.instance_types and any(t.weight != 1 for t in self.primary.instance_types):
            raise ValueError("fleets.primary instance types must have weight 1")
        if self.core.spot_capacity != 0 or self.core.on_demand_capacity < 1:
            raise ValueError("fleets.core must be on-demand: on_demand_capacity >= 1 and spot_capacity 0")
        if self.task is not None and self.task.on_demand_capacity + self.task.spot_capacity == 0:
            raise ValueError("fleets.task has no capacity: remove it or give it spot_capacity")
        return self


class EmrSparkConfig(_Model):
    """spark-submit settings for the app's step (the app's own session settings live in ``spark:``)."""

    dynamic_allocation_min: int = Field(default=2, ge=0)
    dynamic_allocation_max: int = Field(default=20, ge=1)
    executor_memory: str = Field(default="8g", pattern=r"^\d+[kmgt]$")
    executor_cores: int = Field(default=4, ge=1)
    driver_memory: str = Field(default="4g", pattern=r"^\d+[kmgt]$")
    # YARN restarts a failed driver this many times within attempt_failures_validity (streaming resumes
    # from its checkpoint), then the step fails.
    max_app_attempts: int = Field(default=4, ge=1)
    attempt_failures_validity: Duration = timedelta(hours=1)
    conf: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _min_not_above_max(self) -> EmrSparkConfig:
        if self.dynamic_allocation_min > self.dynamic_allocation_max:
            raise ValueError("spark.dynamic_allocation_min is above spark.dynamic_allocation_max")
        return self

    @field_validator("conf")
    @classmethod
    def _no_derived_keys(cls, conf: dict[str, str]) -> dict[str, str]:
        owned = sorted(key for key in conf if key in _DERIVED_SPARK_CONF)
        if owned:
            keys = ", ".join(f"{key} (set emr.{_DERIVED_SPARK_CONF[key]})" for key in owned)
            raise ValueError(f"spark.conf may not set {keys}: the cluster's settings are derived from it")
        return conf


class TlsConfig(_Model):
    """In-transit encryption certificates for the security configuration."""

    certificate_provider: Literal["PEM", "Custom"] = "PEM"
    # PEM: a zip of privateKey.pem, certificateChain.pem, trustedCertificates.pem. Custom: the provider jar.
    certificates_s3_object: S3Uri
    certificate_provider_class: str | None = None  # Custom only: the Java class implementing the provider

    @model_validator(mode="after")
    def _custom_needs_class(self) -> TlsConfig:
        if self.certificate_provider == "Custom" and not self.certificate_provider_class:
            raise ValueError("tls.certificate_provider_class is required with certificate_provider Custom")
        return self


class RedshiftAuthConfig(_Model):
    """What the cluster needs to reach Redshift without a password in any file."""

    auth: Literal["serverless", "provisioned", "secret"] = "serverless"
    database: str
    # serverless: redshift-serverless:GetCredentials is granted on the workgroup ARN, which holds its ID.
    workgroup_id: str | None = None
    # provisioned: redshift:GetClusterCredentials on the dbuser and dbname ARNs.
    cluster_id: str | None = None
    db_user: str | None = None
    # secret: secretsmanager:GetSecretValue on this secret only (also usable next to the IAM modes).
    secret_arn: str | None = None
    # The role Redshift assumes for COPY from the staging prefix.
    copy_role_arn: str

    @field_validator("workgroup_id")
    @classmethod
    def _uuid(cls, value: str | None) -> str | None:
        if value is not None and not _UUID.match(value):
            raise ValueError("redshift.workgroup_id is the workgroup's ID (a UUID), not its name")
        return value

    @field_validator("secret_arn")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is not None and not _SECRET_ARN.match(value):
            raise ValueError(f"not a Secrets Manager secret ARN: {value!r}")
        return value

    @field_validator("copy_role_arn")
    @classmethod
    def _role(cls, value: str) -> str:
        if not _ROLE_ARN.match(value):
            raise ValueError(f"not an IAM role ARN: {value!r}")
        return value

    @model_validator(mode="after")
    def _mode_pieces(self) -> RedshiftAuthConfig:
        if self.auth == "serverless" and not self.workgroup_id:
            raise ValueError("redshift.workgroup_id is required with auth serverless")
        if self.auth == "provisioned" and not (self.cluster_id and self.db_user):
            raise ValueError("redshift.cluster_id and redshift.db_user are required with auth provisioned")
        if self.auth == "secret" and not self.secret_arn:
            raise ValueError("redshift.secret_arn is required with auth secret")
        return self


class IamConfig(_Model):
    """What the app touches that is not spelled out elsewhere in the configuration."""

    quarantine_path: S3Uri | None = None  # default: <lake.path>/_quarantine
    extra_read_paths: tuple[S3Uri, ...] = ()
    # The customer managed key of the Kinesis stream's server-side encryption (readers need kms:Decrypt on
    # it); unset for an unencrypted stream or one under the AWS managed key aws/kinesis.
    stream_kms_key_arn: str | None = None

    @field_validator("stream_kms_key_arn")
    @classmethod
    def _key_arn(cls, value: str | None) -> str | None:
        if value is not None and not _KMS_KEY_ARN.match(value):
            raise ValueError("iam.stream_kms_key_arn must be a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)")
        return value


class WheelhouseConfig(_Model):
    """The nodes' platform: ``emr package`` downloads every dependency as a wheel built for it, and the
    bootstrap action installs from those wheels only (no package index at bootstrap)."""

    # default: the fleets' instance types (Graviton families are aarch64); every node runs the same AMI.
    architecture: Architecture | None = None
    # The oldest Python patch release the nodes may run: pip checks Requires-Python against it, and
    # install.sh refuses a node whose interpreter is older or of another minor version.
    python_version: str = Field(default="3.11.6", pattern=r"^3\.\d+\.\d+$")
    # The release's Amazon Linux 2023 has glibc 2.34: wheels tagged manylinux_2_34 and older run there.
    glibc: str = Field(default="2.34", pattern=r"^2\.\d+$")


class InstancePrice(_Model):
    vcpus: int = Field(ge=1)
    memory_gib: float = Field(gt=0)
    on_demand: float = Field(ge=0)  # EC2 on-demand $/h
    spot: float = Field(ge=0)  # EC2 spot $/h, an estimate: spot prices move
    emr: float = Field(ge=0)  # EMR uplift $/h, paid on top of EC2 whatever the purchase option


class PricingConfig(_Model):
    """A dated price table. Prices change: refresh it (and ``as_of``) before trusting a plan."""

    as_of: date
    region: str
    currency: Literal["USD"] = "USD"
    instances: dict[str, InstancePrice] = Field(min_length=1)
    kinesis_shard_hour: float = Field(default=0.0, ge=0)
    kinesis_put_payload_units_per_million: float = Field(default=0.0, ge=0)  # one unit per record <= 25 KB


class PlanningConfig(_Model):
    # Sustained events/s one executor core handles through parse, dedup, enrich and both aggregations.
    # An assumption until measured: replace it with the figure from a load test on the chosen instances.
    # Measured: the full pipeline, long-running with a 10 s trigger, keeps up with 2,000 events/s on
    # 2 cores and not with 3,000 (docs/benchmarks.md); a backlog goes ~5,800 events/s per core.
    events_per_second_per_core: int = Field(default=1_500, ge=1)
    headroom: float = Field(default=0.3, ge=0, le=5)  # spare capacity on shards and cores (0.3 = 30 %)
    stream_readers: int = Field(default=1, ge=1)  # queries that each read the whole stream: ingest only
    transient_hours_per_day: float = Field(default=4.0, gt=0, le=24)
    days_per_month: float = Field(default=30.4, gt=0, le=31)


class EmrConfig(_Model):
    """Everything ``mediapulse emr ...`` needs to package, launch, watch and stop the app on EMR."""

    name: str = Field(default="mediapulse", min_length=1, max_length=256)
    release_label: str = Field(default=DEFAULT_RELEASE_LABEL, pattern=r"^emr-")
    region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    account_id: str
    partition: Literal["aws", "aws-cn", "aws-us-gov"] = "aws"
    log_uri: S3Uri
    artifacts: S3Uri  # package uploads to <artifacts>/<version>/
    kms_key_arn: str
    subnet_ids: tuple[str, ...] = Field(min_length=1)
    key_name: str | None = None  # EC2 key pair for SSH; leave unset and use SSM Session Manager
    service_role: str = "EMR_DefaultRole_V2"
    instance_profile: str = "EMR_EC2_DefaultRole"  # the instance profile's name; its role gets `policies`
    security_configuration: str
    tls: TlsConfig
    lifecycle: Literal["long-running", "transient"] = "long-running"
    idle_timeout: Duration = timedelta(hours=1)  # transient only: terminate after this long with no step
    step_concurrency_level: int = Field(default=1, ge=1, le=256)
    python: str = "/usr/bin/python3.11"  # the nodes' interpreter; it creates the app's virtualenv
    # The app's virtualenv on every node: install.sh fills it from the release's wheelhouse, and Spark's
    # driver and executors run its interpreter (PYSPARK_PYTHON). The system Python is left alone.
    venv: str = Field(default="/opt/mediapulse/venv", pattern=r"^/[\w.+/-]+$")
    wheelhouse: WheelhouseConfig = WheelhouseConfig()
    # Where YARN may start ApplicationMasters, i.e. the app's driver in cluster mode (node labels, EMR 7.2+):
    # on-demand nodes, core nodes, or anywhere (a spot reclaim of the driver's node restarts the stream).
    driver_placement: Literal["ON_DEMAND", "CORE", "anywhere"] = "ON_DEMAND"
    fleets: FleetsConfig
    spark: EmrSparkConfig = EmrSparkConfig()
    step_name: str = Field(default="mediapulse-stream", min_length=1, max_length=256)
    app_args: tuple[str, ...] = Field(default=("run",), min_length=1)  # `mediapulse` args of the step
    stop_timeout: Duration = timedelta(minutes=15)
    stop_poll_interval: Duration = timedelta(seconds=20)
    tags: dict[str, str] = Field(default_factory=dict)
    redshift: RedshiftAuthConfig | None = None
    iam: IamConfig = IamConfig()
    pricing: PricingConfig
    planning: PlanningConfig = PlanningConfig()

    @field_validator("account_id", mode="before")
    @classmethod
    def _account(cls, value: Any) -> Any:
        value = str(value).zfill(12) if isinstance(value, int) else value
        if not isinstance(value, str) or not _ACCOUNT.match(value):
            raise ValueError("account_id must be the 12-digit AWS account ID")
        return value

    @field_validator("kms_key_arn")
    @classmethod
    def _kms(cls, value: str) -> str:
        if not _KMS_KEY_ARN.match(value):
            raise ValueError("kms_key_arn must be a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), no alias")
        return value

    @property
    def instance_types(self) -> tuple[str, ...]:
        fleets = [self.fleets.primary, self.fleets.core] + ([self.fleets.task] if self.fleets.task else [])
        return tuple(dict.fromkeys(t.type for fleet in fleets for t in fleet.instance_types))

    @property
    def venv_python(self) -> str:
        """The interpreter Spark runs on every node: the virtualenv's."""
        return f"{self.venv.rstrip('/')}/bin/python"

    @property
    def architecture(self) -> Architecture:
        """The nodes' CPU architecture: ``wheelhouse.architecture``, else that of the instance types."""
        return self.wheelhouse.architecture or instance_architecture(self.instance_types[0])

    @model_validator(mode="after")
    def _priced_instances(self) -> EmrConfig:
        missing = sorted(set(self.instance_types) - set(self.pricing.instances))
        if missing:
            raise ValueError(f"pricing.instances has no entry for {', '.join(missing)}")
        return self

    @model_validator(mode="after")
    def _one_platform(self) -> EmrConfig:
        # One wheelhouse serves every node, so every node must run the same architecture and Python.
        if self.wheelhouse.architecture is None:
            kinds = {t: instance_architecture(t) for t in self.instance_types}
            if len(set(kinds.values())) > 1:
                listed = ", ".join(f"{t} ({a})" for t, a in kinds.items())
                raise ValueError(f"the fleets mix CPU architectures ({listed}): use one for every node")
        match = _VERSIONED_PYTHON.search(self.python)
        if match is None:
            raise ValueError(
                f"python must be a versioned interpreter (/usr/bin/python3.11), not {self.python}"
            )
        if not self.wheelhouse.python_version.startswith(match["version"] + "."):
            raise ValueError(
                f"wheelhouse.python_version {self.wheelhouse.python_version} is not the version of "
                f"python ({self.python})"
            )
        return self


def emr_settings(section: EmrConfig | Mapping[str, Any] | None) -> EmrConfig:
    """The validated ``emr:`` section, whether ``AppConfig.emr`` is already typed or still a mapping."""
    if isinstance(section, EmrConfig):
        return section
    if section is None:
        raise EmrConfigError("the configuration has no emr: section (see config/emr.yaml)")
    try:
        return EmrConfig.model_validate(dict(section))
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(["emr", *(str(p) for p in err["loc"])])
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"  {key}: {msg}")
        raise EmrConfigError("invalid emr configuration:\n" + "\n".join(problems)) from e
