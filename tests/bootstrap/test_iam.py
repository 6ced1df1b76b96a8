from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bootstrap.aws import Clients
from bootstrap.iam import copy_role_policy, copy_role_trust_policy, instance_profile_policy, policies
from bootstrap.settings import EmrConfigError, emr_settings
from tests.bootstrap.conftest import ACCOUNT, REGION, prod_config, small_config, staging_config

KEY = "arn:aws:kms:eu-west-1:123456789012:key/8c1e7f52-3a9d-4b6e-9f10-2d4c6a8b0e13"


def _resources(document: dict[str, Any]) -> list[str]:
    found = []
    for statement in document["Statement"]:
        resource = statement.get("Resource", [])  # a trust policy names a principal, not a resource
        found += [resource] if isinstance(resource, str) else resource
    return found


def _statement(document: dict[str, Any], sid: str) -> dict[str, Any]:
    (statement,) = [s for s in document["Statement"] if s["Sid"] == sid]
    return statement


def _expected_prod_resources() -> set[str]:
    """Every ARN the production config may produce, written out from config/emr.yaml's values."""
    s3 = "arn:aws:s3:::"
    return {
        f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/mediapulse-engagement",
        f"{s3}mediapulse-prod-dimensions/content",
        f"{s3}mediapulse-prod-dimensions/content/*",
        f"{s3}mediapulse-prod-artifacts/emr",
        f"{s3}mediapulse-prod-artifacts/emr/*",
        f"{s3}mediapulse-prod-artifacts/tls/emr-certificates.zip",
        f"{s3}mediapulse-prod-lake/*",  # the lake is the whole bucket: staging and quarantine are in it
        f"{s3}mediapulse-prod-checkpoints/engagement",
        f"{s3}mediapulse-prod-checkpoints/engagement_$folder$",
        f"{s3}mediapulse-prod-checkpoints/engagement/*",
        f"{s3}mediapulse-prod-logs/emr/*",
        f"{s3}mediapulse-prod-dimensions",
        f"{s3}mediapulse-prod-artifacts",
        f"{s3}mediapulse-prod-lake",
        f"{s3}mediapulse-prod-checkpoints",
        KEY,
        f"arn:aws:redshift-serverless:{REGION}:{ACCOUNT}:workgroup/5f0e8a52-7c3b-4d19-a6e2-91b4c0d7f368",
    }


def test_documents_are_valid_json_with_only_configured_resources(tmp_path: Path):
    documents = policies(prod_config(), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "emr-instance-profile.json",
        "redshift-copy-role-trust.json",
        "redshift-copy-role.json",
    ]
    written = json.loads((tmp_path / "emr-instance-profile.json").read_text())
    assert written == documents["emr-instance-profile"]
    assert set(_resources(written)) == _expected_prod_resources()


def test_no_statement_uses_a_star_resource():
    efo = small_config({"kind": "kinesis", "stream_name": "events", "consumer_type": "efo"})
    for cfg in (prod_config(), staging_config(), efo):
        for document in policies(cfg).values():
            for resource in _resources(document):
                assert resource != "*"
                assert "*" not in resource.removesuffix("/*").removesuffix(":*"), resource


def test_kms_is_only_decrypt_and_generate_data_key_on_the_key():
    statement = _statement(instance_profile_policy(prod_config()), "UseKey")
    assert statement["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert statement["Resource"] == KEY


def test_writes_cover_only_lake_quarantine_staging_and_checkpoint():
    cfg = small_config()
    document = instance_profile_policy(cfg)
    writes = _statement(document, "WriteOutputs")["Resource"]
    assert writes == [
        "arn:aws:s3:::t-lake/lake",
        "arn:aws:s3:::t-lake/lake_$folder$",
        "arn:aws:s3:::t-lake/lake/*",  # quarantine and staging default to <lake>/_quarantine, /_staging
        "arn:aws:s3:::t-state/checkpoints",
        "arn:aws:s3:::t-state/checkpoints_$folder$",
        "arn:aws:s3:::t-state/checkpoints/*",
    ]
    assert "s3:PutObject" not in _statement(document, "ReadInputs")["Action"]


def test_list_bucket_is_narrowed_by_prefix():
    document = instance_profile_policy(small_config())
    listing = {s["Resource"]: s for s in document["Statement"] if s["Action"] == ["s3:ListBucket"]}
    assert listing["arn:aws:s3:::t-lake"]["Condition"] == {"StringLike": {"s3:prefix": ["lake", "lake/*"]}}
    assert listing["arn:aws:s3:::t-dims"]["Condition"] == {
        "StringLike": {"s3:prefix": ["content", "content/*"]}
    }
    assert "arn:aws:s3:::t-logs" not in listing  # logs are only put


def test_quarantine_outside_the_lake_is_granted_separately():
    cfg = small_config(iam={"quarantine_path": "s3://t-quarantine/bad"})
    writes = _statement(instance_profile_policy(cfg), "WriteOutputs")["Resource"]
    assert "arn:aws:s3:::t-quarantine/bad/*" in writes


def test_stop_marker_outside_the_checkpoint_can_be_read():
    cfg = small_config()
    cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"stop_marker": "s3://t-ops/stop"})})
    statement = _statement(instance_profile_policy(cfg), "CheckStopMarker")
    assert statement == {
        "Sid": "CheckStopMarker",
        "Effect": "Allow",
        "Action": ["s3:GetObject"],
        "Resource": "arn:aws:s3:::t-ops/stop",
    }


def test_enhanced_fan_out_reads_only_through_its_consumer():
    source = {"kind": "kinesis", "stream_name": "events", "consumer_type": "efo", "consumer_name": "mp"}
    document = instance_profile_policy(small_config(source))
    stream = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/events"
    assert _statement(document, "RegisterConsumer")["Resource"] == stream
    fan_out = _statement(document, "ReadWithFanOut")
    assert fan_out["Action"] == ["kinesis:DescribeStreamConsumer", "kinesis:SubscribeToShard"]
    assert fan_out["Resource"] == f"{stream}/consumer/mp:*"
    deregister = _statement(document, "DeregisterConsumer")
    assert deregister["Action"] == ["kinesis:DeregisterStreamConsumer"]
    assert deregister["Resource"] == [stream, f"{stream}/consumer/mp:*"]


def test_polling_source_gets_no_fan_out_actions():
    document = instance_profile_policy(prod_config())
    actions = {a for s in document["Statement"] for a in s["Action"]}
    assert "kinesis:SubscribeToShard" not in actions and "kinesis:ListStreams" not in actions


def test_provisioned_redshift_gets_cluster_credentials_for_one_user_and_database():
    document = instance_profile_policy(staging_config())
    statement = _statement(document, "RedshiftClusterCredentials")
    assert statement["Resource"] == [
        "arn:aws:redshift:eu-west-1:210987654321:dbuser:mediapulse-staging/mediapulse_loader",
        "arn:aws:redshift:eu-west-1:210987654321:dbname:mediapulse-staging/analytics",
    ]


def test_secret_mode_reads_only_that_secret():
    secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:mediapulse/redshift-AbCdEf"
    redshift = {
        "auth": "secret",
        "database": "db",
        "secret_arn": secret,
        "copy_role_arn": f"arn:aws:iam::{ACCOUNT}:role/c",
    }
    cfg = small_config(redshift=redshift)
    cfg = cfg.model_copy(
        update={"warehouse": cfg.warehouse.model_copy(update={"url": "redshift://h:5439/db?schema=s"})}
    )
    assert _statement(instance_profile_policy(cfg), "RedshiftSecret")["Resource"] == secret


def test_redshift_warehouse_without_emr_redshift_is_refused():
    cfg = prod_config("emr.redshift=null")
    with pytest.raises(EmrConfigError, match=r"emr\.redshift"):
        policies(cfg)


def test_copy_role_differing_from_the_warehouse_url_is_refused():
    cfg = staging_config("emr.redshift.copy_role_arn=arn:aws:iam::210987654321:role/other")
    with pytest.raises(EmrConfigError, match="iam_role"):
        policies(cfg)


def test_copy_role_reads_only_the_staging_prefix():
    document = copy_role_policy(prod_config())
    assert _statement(document, "ReadStaging") == {
        "Sid": "ReadStaging",
        "Effect": "Allow",
        "Action": ["s3:GetObject"],
        "Resource": [
            "arn:aws:s3:::mediapulse-prod-lake/_staging",
            "arn:aws:s3:::mediapulse-prod-lake/_staging/*",
        ],
    }
    assert _statement(document, "DecryptStaging")["Action"] == ["kms:Decrypt"]
    actions = {a for s in document["Statement"] for a in s["Action"]}
    assert actions == {"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation", "kms:Decrypt"}


def test_polling_source_gets_no_deregister_action():
    actions = {a for s in instance_profile_policy(prod_config())["Statement"] for a in s["Action"]}
    assert "kinesis:DeregisterStreamConsumer" not in actions


def test_a_stream_under_its_own_key_is_decrypted_only_through_kinesis():
    stream_key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"
    document = instance_profile_policy(small_config(iam={"stream_kms_key_arn": stream_key}))
    assert _statement(document, "DecryptStream") == {
        "Sid": "DecryptStream",
        "Effect": "Allow",
        "Action": ["kms:Decrypt"],
        "Resource": stream_key,
        "Condition": {"StringEquals": {"kms:ViaService": f"kinesis.{REGION}.amazonaws.com"}},
    }


def test_no_stream_key_statement_without_a_stream_key_or_with_the_cluster_s_key():
    key_arn = emr_settings(small_config().emr).kms_key_arn
    for cfg in (prod_config(), small_config(iam={"stream_kms_key_arn": key_arn})):
        sids = {s["Sid"] for s in instance_profile_policy(cfg)["Statement"]}
        assert "DecryptStream" not in sids


def test_only_redshift_may_assume_the_copy_role():
    serverless = copy_role_trust_policy(prod_config())
    assert serverless == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "RedshiftAssumesForCopy",
                "Effect": "Allow",
                "Principal": {"Service": ["redshift.amazonaws.com", "redshift-serverless.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    provisioned = copy_role_trust_policy(staging_config())
    assert provisioned["Statement"][0]["Principal"] == {"Service": ["redshift.amazonaws.com"]}


def test_iam_accepts_the_documents(aws: Clients):
    iam = aws("iam")
    documents = policies(prod_config())
    trust = documents.pop("redshift-copy-role-trust")
    role = iam.create_role(RoleName="mediapulse-redshift-copy", AssumeRolePolicyDocument=json.dumps(trust))
    assert role["Role"]["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/mediapulse-redshift-copy"
    for name, document in documents.items():
        arn = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(document))["Policy"]["Arn"]
        assert arn == f"arn:aws:iam::{ACCOUNT}:policy/{name}"
    iam.attach_role_policy(
        RoleName="mediapulse-redshift-copy",
        PolicyArn=f"arn:aws:iam::{ACCOUNT}:policy/redshift-copy-role",
    )
    stored = iam.get_role(RoleName="mediapulse-redshift-copy")["Role"]["AssumeRolePolicyDocument"]
    assert stored == trust
