"""Least-privilege IAM policy documents, derived from the configuration.

Three documents:

* ``emr-instance-profile``: the role of the cluster's EC2 instance profile (what the app and the nodes
  do): read the Kinesis stream (decrypting it with the stream's key when that is a customer managed
  key; with enhanced fan-out, register, use and deregister the app's consumer), the dimensions, the
  artifacts and the TLS certificates; write only the lake, quarantine, staging and checkpoint prefixes
  (and logs); use only the configured KMS key; get Redshift credentials for the configured database only.
* ``redshift-copy-role``: the role Redshift assumes for ``COPY``: read the staging prefix, decrypt.
* ``redshift-copy-role-trust``: that role's trust policy: only Redshift (and, for a serverless
  workgroup, Redshift Serverless) may assume it.

Every resource is an ARN built from the configuration; no statement uses ``"*"``. Actions that only
work on ``"*"`` (``kinesis:ListStreams``, ``s3:ListAllMyBuckets``) are deliberately absent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from bootstrap.cluster import s3_split, stop_marker_uri
from bootstrap.settings import EmrConfig, EmrConfigError, emr_settings

if TYPE_CHECKING:
    from streaming.config import AppConfig

VERSION = "2012-10-17"
KINESIS_READ = [
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamSummary",
    "kinesis:ListShards",
    "kinesis:GetShardIterator",
    "kinesis:GetRecords",
]
S3_READ = ["s3:GetObject"]
S3_WRITE = [
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
]


def _allow(
    sid: str, actions: list[str], resources: str | list[str], condition: dict[str, Any] | None = None
) -> dict[str, Any]:
    statement: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


@dataclass(frozen=True)
class _Prefix:
    bucket: str
    key: str  # "" for the whole bucket

    @classmethod
    def of(cls, uri: str) -> _Prefix:
        bucket, key = s3_split(uri)
        return cls(bucket, key)

    def covers(self, other: _Prefix) -> bool:
        return self.bucket == other.bucket and (
            not self.key or other.key == self.key or other.key.startswith(self.key + "/")
        )


def _minimal(prefixes: Sequence[_Prefix], covered_by: Sequence[_Prefix] = ()) -> list[_Prefix]:
    """Drop duplicates and prefixes already inside another one (of this list or of ``covered_by``)."""
    unique = list(dict.fromkeys(prefixes))
    inside = [p for p in unique if any(o != p and o.covers(p) for o in unique)]
    return [p for p in unique if p not in inside and not any(o.covers(p) for o in covered_by)]


class _Arns:
    """ARNs in the configured partition, region and account."""

    def __init__(self, emr: EmrConfig) -> None:
        self.partition = emr.partition
        self.region = emr.region
        self.account = emr.account_id

    def s3_bucket(self, bucket: str) -> str:
        return f"arn:{self.partition}:s3:::{bucket}"

    def s3_objects(self, prefix: _Prefix, folder_marker: bool = False) -> list[str]:
        """The prefix's objects; ``[0]`` is the key itself, ``[-1]`` everything under it."""
        if not prefix.key:
            return [f"arn:{self.partition}:s3:::{prefix.bucket}/*"]
        base = f"arn:{self.partition}:s3:::{prefix.bucket}/{prefix.key}"
        # EMRFS marks a directory it creates with a "<dir>_$folder$" object beside it.
        return [base, *([f"{base}_$folder$"] if folder_marker else []), f"{base}/*"]

    def kinesis_stream(self, region: str, name: str) -> str:
        return f"arn:{self.partition}:kinesis:{region}:{self.account}:stream/{name}"

    def redshift(self, kind: str, cluster: str, name: str) -> str:
        return f"arn:{self.partition}:redshift:{self.region}:{self.account}:{kind}:{cluster}/{name}"

    def workgroup(self, workgroup_id: str) -> str:
        return (
            f"arn:{self.partition}:redshift-serverless:{self.region}:{self.account}:workgroup/{workgroup_id}"
        )


def _list_bucket(arns: _Arns, sid: str, prefixes: Sequence[_Prefix]) -> list[dict[str, Any]]:
    """``s3:ListBucket`` per bucket, narrowed by ``s3:prefix`` unless the whole bucket is in scope.

    ``s3:GetBucketLocation`` gets its own statement: it has no ``s3:prefix`` key, so a prefix condition
    would never match it.
    """
    buckets = list(dict.fromkeys(p.bucket for p in prefixes))
    statements = []
    for number, bucket in enumerate(buckets, start=1):
        keys = [p.key for p in prefixes if p.bucket == bucket]
        condition = None
        if "" not in keys:
            condition = {"StringLike": {"s3:prefix": [pattern for k in keys for pattern in (k, f"{k}/*")]}}
        statements.append(_allow(f"{sid}{number}", ["s3:ListBucket"], arns.s3_bucket(bucket), condition))
    statements.append(
        _allow(f"{sid}Location", ["s3:GetBucketLocation"], [arns.s3_bucket(bucket) for bucket in buckets])
    )
    return statements


def _s3_only(what: str, paths: Sequence[str]) -> None:
    local = [p for p in paths if not p.startswith("s3://")]
    if local:
        raise EmrConfigError(f"on EMR {what} must be s3:// URIs, not {', '.join(local)}")


def _write_prefixes(cfg: AppConfig, emr: EmrConfig) -> list[_Prefix]:
    lake = cfg.lake.path.rstrip("/")
    paths = [lake, emr.iam.quarantine_path or f"{lake}/_quarantine", cfg.staging_path, cfg.checkpoint.path]
    _s3_only("the lake, quarantine, staging and checkpoint paths", paths)
    return _minimal([_Prefix.of(p) for p in paths])


def _kinesis_statements(cfg: AppConfig, emr: EmrConfig, arns: _Arns) -> list[dict[str, Any]]:
    source = cfg.source
    if source.kind != "kinesis":
        return []
    region = source.region or emr.region
    stream = arns.kinesis_stream(region, str(source.stream_name))
    statements = [_allow("ReadStream", KINESIS_READ, stream)]
    if source.consumer_type == "efo":
        # Consumer ARNs end in their creation timestamp, unknown until the consumer is registered.
        consumer = f"{stream}/consumer/{source.consumer_name or cfg.app_name}:*"
        statements.append(_allow("RegisterConsumer", ["kinesis:RegisterStreamConsumer"], stream))
        statements.append(
            _allow("ReadWithFanOut", ["kinesis:DescribeStreamConsumer", "kinesis:SubscribeToShard"], consumer)
        )
        # Deregistering names the consumer by its ARN, or by the stream's ARN and the consumer's name.
        statements.append(
            _allow("DeregisterConsumer", ["kinesis:DeregisterStreamConsumer"], [stream, consumer])
        )
    key = emr.iam.stream_kms_key_arn
    if key and key != emr.kms_key_arn:
        # Kinesis decrypts records with the stream's key on the reader's behalf, and only for Kinesis.
        via_kinesis = {"StringEquals": {"kms:ViaService": f"kinesis.{region}.amazonaws.com"}}
        statements.append(_allow("DecryptStream", ["kms:Decrypt"], key, via_kinesis))
    return statements


def _redshift_statements(cfg: AppConfig, emr: EmrConfig, arns: _Arns) -> list[dict[str, Any]]:
    if not cfg.warehouse.url.startswith("redshift"):
        return []
    rs = emr.redshift
    if rs is None:
        raise EmrConfigError("warehouse.url is a Redshift URL: emr.redshift must say how to get credentials")
    url = urlsplit(cfg.warehouse.url)
    database = url.path.strip("/")
    copy_role = parse_qs(url.query).get("iam_role", [None])[0]
    if database and database != rs.database:
        raise EmrConfigError(f"emr.redshift.database is {rs.database!r} but warehouse.url names {database!r}")
    if copy_role and copy_role != rs.copy_role_arn:
        raise EmrConfigError(f"emr.redshift.copy_role_arn differs from warehouse.url's iam_role {copy_role}")
    statements = []
    if rs.auth == "serverless":
        statements.append(
            _allow(
                "RedshiftServerlessCredentials",
                ["redshift-serverless:GetCredentials"],
                arns.workgroup(str(rs.workgroup_id)),
            )
        )
    elif rs.auth == "provisioned":
        cluster = str(rs.cluster_id)
        statements.append(
            _allow(
                "RedshiftClusterCredentials",
                ["redshift:GetClusterCredentials"],
                [
                    arns.redshift("dbuser", cluster, str(rs.db_user)),
                    arns.redshift("dbname", cluster, rs.database),
                ],
            )
        )
    if rs.secret_arn:
        statements.append(_allow("RedshiftSecret", ["secretsmanager:GetSecretValue"], rs.secret_arn))
    return statements


def instance_profile_policy(cfg: AppConfig) -> dict[str, Any]:
    """The permissions policy for the role of the cluster's EC2 instance profile."""
    emr = emr_settings(cfg.emr)
    arns = _Arns(emr)
    _s3_only("dimensions.content_path", [cfg.dimensions.content_path])

    writes = _write_prefixes(cfg, emr)
    reads = _minimal(
        [_Prefix.of(p) for p in (cfg.dimensions.content_path, emr.artifacts, *emr.iam.extra_read_paths)],
        covered_by=writes,
    )
    logs = _Prefix.of(emr.log_uri)
    read_objects = [arn for p in reads for arn in arns.s3_objects(p)]
    # The nodes fetch the TLS certificate bundle themselves: that one object, not its folder.
    certificates = _Prefix.of(emr.tls.certificates_s3_object)
    if not any(p.covers(certificates) for p in [*reads, *writes]):
        read_objects.append(arns.s3_objects(certificates)[0])

    statements = _kinesis_statements(cfg, emr, arns)
    statements.append(_allow("ReadInputs", S3_READ, read_objects))
    statements.append(
        _allow("WriteOutputs", S3_WRITE, [a for p in writes for a in arns.s3_objects(p, folder_marker=True)])
    )
    marker = _Prefix.of(stop_marker_uri(cfg))
    listed = [*reads, *writes]
    if not any(p.covers(marker) for p in writes):
        # The app checks for the marker `emr stop` writes (a HEAD, then a listing of "<marker>/").
        statements.append(_allow("CheckStopMarker", ["s3:GetObject"], arns.s3_objects(marker)[0]))
        listed.append(marker)
    # EMR's log pusher on each node uploads with the instance profile.
    statements.append(_allow("WriteLogs", ["s3:PutObject"], arns.s3_objects(logs)[-1]))
    statements += _list_bucket(arns, "ListPrefixes", _minimal(listed))
    statements.append(_allow("UseKey", ["kms:Decrypt", "kms:GenerateDataKey"], emr.kms_key_arn))
    statements += _redshift_statements(cfg, emr, arns)
    return {"Version": VERSION, "Statement": statements}


def copy_role_policy(cfg: AppConfig) -> dict[str, Any]:
    """The permissions policy for the role Redshift assumes to ``COPY`` staged batches."""
    emr = emr_settings(cfg.emr)
    arns = _Arns(emr)
    _s3_only("the staging path", [cfg.staging_path])
    staging = _Prefix.of(cfg.staging_path)
    return {
        "Version": VERSION,
        "Statement": [
            _allow("ReadStaging", ["s3:GetObject"], arns.s3_objects(staging)),
            *_list_bucket(arns, "ListStaging", [staging]),
            _allow("DecryptStaging", ["kms:Decrypt"], emr.kms_key_arn),
        ],
    }


def copy_role_trust_policy(cfg: AppConfig) -> dict[str, Any]:
    """The trust policy of the COPY role: Redshift assumes it for the load, nobody else.

    A provisioned cluster assumes roles as ``redshift.amazonaws.com``; a serverless workgroup's role
    trusts ``redshift-serverless.amazonaws.com`` as well. Only a cluster or workgroup the role is
    associated with (which takes ``iam:PassRole`` in this account) can use it.
    """
    emr = emr_settings(cfg.emr)
    services = ["redshift.amazonaws.com"]
    if emr.redshift is not None and emr.redshift.auth == "serverless":
        services.append("redshift-serverless.amazonaws.com")
    statement = {
        "Sid": "RedshiftAssumesForCopy",
        "Effect": "Allow",
        "Principal": {"Service": services},
        "Action": "sts:AssumeRole",
    }
    return {"Version": VERSION, "Statement": [statement]}


def policies(cfg: AppConfig, out_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """All policy documents by name; written to ``<out_dir>/<name>.json`` when ``out_dir`` is given.

    ``*-trust`` documents are trust policies (``aws iam create-role --assume-role-policy-document``),
    the others permissions policies.
    """
    documents = {"emr-instance-profile": instance_profile_policy(cfg)}
    if cfg.warehouse.url.startswith("redshift"):
        documents["redshift-copy-role"] = copy_role_policy(cfg)
        documents["redshift-copy-role-trust"] = copy_role_trust_policy(cfg)
    if out_dir is not None:
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name, document in documents.items():
            (folder / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")
    return documents
