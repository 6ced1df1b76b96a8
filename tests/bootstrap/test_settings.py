from __future__ import annotations

from datetime import timedelta

import pytest

from bootstrap.settings import (
    DEFAULT_RELEASE_LABEL,
    EmrConfig,
    EmrConfigError,
    emr_settings,
    instance_architecture,
)
from streaming.config import load_config
from tests.bootstrap.conftest import PROD, ROOT, emr_section, prod_config, staging_config


def test_shipped_configs_validate_and_hold_no_secret_looking_values():
    for cfg in (prod_config(), staging_config()):
        emr = emr_settings(cfg.emr)
        assert emr.release_label == DEFAULT_RELEASE_LABEL
        dumped = str(emr.model_dump()).lower()
        assert "password" not in dumped and "secret_access_key" not in dumped


def test_prod_is_long_running_and_staging_transient_and_smaller():
    prod, staging = emr_settings(prod_config().emr), emr_settings(staging_config().emr)
    assert (prod.lifecycle, staging.lifecycle) == ("long-running", "transient")
    assert staging.fleets.core.on_demand_capacity < prod.fleets.core.on_demand_capacity
    assert staging.spark.dynamic_allocation_max < prod.spark.dynamic_allocation_max
    assert staging.idle_timeout == timedelta(minutes=30)


def test_missing_section_is_a_clear_error():
    cfg = load_config(ROOT / "config" / "local.yaml", environ={})
    with pytest.raises(EmrConfigError, match="no emr: section"):
        emr_settings(cfg.emr)


def test_errors_name_the_offending_keys():
    with pytest.raises(EmrConfigError) as caught:
        emr_settings(emr_section(account_id="12", colour="blue"))
    message = str(caught.value)
    assert "emr.account_id" in message and "emr.colour: unknown key" in message


def test_override_through_load_config_reaches_the_section():
    cfg = load_config(PROD, ["emr.fleets.task.spot_capacity=9"], environ={})
    assert emr_settings(cfg.emr).fleets.task.spot_capacity == 9


@pytest.mark.parametrize(
    ("fleets_change", "message"),
    [
        (
            {"primary": {"instance_types": ["m.small"], "on_demand_capacity": 1, "spot_capacity": 1}},
            "primary",
        ),
        ({"core": {"instance_types": ["m.big"], "on_demand_capacity": 1, "spot_capacity": 2}}, "core"),
        ({"task": {"instance_types": ["m.big"]}}, "task has no capacity"),
    ],
)
def test_primary_and_core_must_be_on_demand(fleets_change: dict, message: str):
    fleets = {**emr_section()["fleets"], **fleets_change}
    with pytest.raises(EmrConfigError, match=message):
        emr_settings(emr_section(fleets=fleets))


def test_every_instance_type_needs_a_price():
    fleets = {**emr_section()["fleets"], "task": {"instance_types": ["x.unpriced"], "spot_capacity": 1}}
    with pytest.raises(EmrConfigError, match=r"no entry for x\.unpriced"):
        emr_settings(emr_section(fleets=fleets))


def test_redshift_modes_need_their_pieces():
    role = "arn:aws:iam::123456789012:role/copy"
    with pytest.raises(EmrConfigError, match="workgroup_id is required"):
        emr_settings(emr_section(redshift={"database": "db", "copy_role_arn": role}))
    with pytest.raises(EmrConfigError, match="the workgroup's ID"):
        emr_settings(
            emr_section(redshift={"database": "db", "copy_role_arn": role, "workgroup_id": "analytics"})
        )
    with pytest.raises(EmrConfigError, match=r"cluster_id and redshift\.db_user"):
        emr_settings(emr_section(redshift={"auth": "provisioned", "database": "db", "copy_role_arn": role}))


def test_kms_key_must_be_a_key_arn_not_an_alias():
    with pytest.raises(EmrConfigError, match="kms_key_arn"):
        emr_settings(emr_section(kms_key_arn="alias/mediapulse"))


def test_section_is_frozen():
    emr = EmrConfig.model_validate(emr_section())
    with pytest.raises(ValueError):
        emr.region = "us-east-1"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("instance_type", "architecture"),
    [
        ("m7g.2xlarge", "aarch64"),
        ("r6gd.4xlarge", "aarch64"),
        ("c7gn.large", "aarch64"),
        ("is4gen.xlarge", "aarch64"),
        ("a1.large", "aarch64"),
        ("m7i.2xlarge", "x86_64"),
        ("g5.xlarge", "x86_64"),
        ("g4dn.xlarge", "x86_64"),
        ("c7i-flex.large", "x86_64"),
        ("r5.2xlarge", "x86_64"),
    ],
)
def test_instance_architecture_follows_the_graviton_attribute(instance_type: str, architecture: str):
    assert instance_architecture(instance_type) == architecture


def test_the_nodes_architecture_comes_from_the_fleets_unless_set():
    assert emr_settings(prod_config().emr).architecture == "aarch64"  # m7g, r7g, m6g...
    assert emr_settings(emr_section()).architecture == "x86_64"  # m.small, m.big
    explicit = emr_section(wheelhouse={"architecture": "aarch64"})
    assert emr_settings(explicit).architecture == "aarch64"


def test_fleets_of_two_architectures_are_refused():
    section = emr_section()
    fleets = {**section["fleets"], "task": {"instance_types": ["m7g.2xlarge"], "spot_capacity": 1}}
    pricing = {**section["pricing"]}
    pricing["instances"] = {
        **pricing["instances"],
        "m7g.2xlarge": {"vcpus": 8, "memory_gib": 32, "on_demand": 0.3, "spot": 0.1, "emr": 0.08},
    }
    with pytest.raises(EmrConfigError, match="mix CPU architectures"):
        emr_settings(emr_section(fleets=fleets, pricing=pricing))


def test_the_wheelhouse_python_must_be_the_interpreter_s_version():
    with pytest.raises(EmrConfigError, match="not the version of python"):
        emr_settings(emr_section(python="/usr/bin/python3.12"))
    with pytest.raises(EmrConfigError, match="versioned interpreter"):
        emr_settings(emr_section(python="/usr/bin/python3"))
    assert emr_settings(emr_section()).venv_python == "/opt/mediapulse/venv/bin/python"


def test_spark_conf_cannot_override_what_the_cluster_derives():
    spark = {**emr_section()["spark"], "conf": {"spark.yarn.maxAppAttempts": "9"}}
    with pytest.raises(EmrConfigError, match=r"spark\.max_app_attempts"):
        emr_settings(emr_section(spark=spark))


def test_stream_key_must_be_a_key_arn():
    with pytest.raises(EmrConfigError, match="stream_kms_key_arn"):
        emr_settings(emr_section(iam={"stream_kms_key_arn": "alias/aws/kinesis"}))
