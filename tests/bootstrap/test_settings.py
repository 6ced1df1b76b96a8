from __future__ import annotations

from datetime import timedelta

import pytest

from bootstrap.settings import DEFAULT_RELEASE_LABEL, EmrConfig, EmrConfigError, emr_settings
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
