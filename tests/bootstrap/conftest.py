from __future__ import annotations

import logging
import os
import platform
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bootstrap.artifacts import (
    Pins,
    Platform,
    build_wheel,
    build_wheelhouse,
    pinned_requirements,
    project_metadata,
    project_root,
    write_constraints,
)
from bootstrap.aws import Clients
from bootstrap.settings import emr_settings
from streaming.config import AppConfig, load_config
from tests.bootstrap.wheels import wheels_for_pins

ROOT = Path(__file__).resolve().parents[2]
PROD = ROOT / "config" / "emr.yaml"
STAGING = ROOT / "config" / "emr-staging.yaml"
ACCOUNT = "123456789012"  # the account moto answers as, and the one config/emr.yaml names
REGION = "eu-west-1"

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def prod_config(*overrides: str) -> AppConfig:
    return load_config(PROD, overrides, environ={})


def staging_config(*overrides: str) -> AppConfig:
    return load_config(STAGING, overrides, environ={})


def emr_section(**changes: Any) -> dict[str, Any]:
    """A small, complete ``emr:`` section for tests that want exact numbers."""
    section: dict[str, Any] = {
        "region": REGION,
        "account_id": ACCOUNT,
        "log_uri": "s3://t-logs/emr",
        "artifacts": "s3://t-artifacts/emr",
        "kms_key_arn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/00000000-0000-0000-0000-000000000001",
        "subnet_ids": ["subnet-1"],
        "security_configuration": "t-sec",
        "tls": {"certificates_s3_object": "s3://t-artifacts/tls/certs.zip"},
        "fleets": {
            "primary": {"instance_types": ["m.small"], "on_demand_capacity": 1},
            "core": {"instance_types": ["m.big"], "on_demand_capacity": 2},
            "task": {"instance_types": ["m.big"], "spot_capacity": 2},
        },
        "spark": {"executor_cores": 4, "executor_memory": "8g", "dynamic_allocation_max": 100},
        "pricing": {
            "as_of": "2026-11-01",
            "region": REGION,
            "kinesis_shard_hour": 0.02,
            "kinesis_put_payload_units_per_million": 0.01,
            "instances": {
                "m.small": {"vcpus": 4, "memory_gib": 16, "on_demand": 0.2, "spot": 0.08, "emr": 0.05},
                "m.big": {"vcpus": 8, "memory_gib": 64, "on_demand": 0.5, "spot": 0.2, "emr": 0.1},
            },
        },
        "planning": {"events_per_second_per_core": 10_000, "headroom": 0.0, "transient_hours_per_day": 6},
    }
    section.update(changes)
    return section


def small_config(source: dict[str, Any] | None = None, **emr_changes: Any) -> AppConfig:
    return AppConfig.model_validate(
        {
            "source": source or {"kind": "kinesis", "stream_name": "events", "region": REGION},
            "dimensions": {"content_path": "s3://t-dims/content/"},
            "lake": {"path": "s3://t-lake/lake"},
            "checkpoint": {"path": "s3://t-state/checkpoints"},
            "emr": emr_section(**emr_changes),
        }
    )


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app's wheel, built once per test session (`pip wheel --no-deps <repo> -w <tmp>`)."""
    return build_wheel(project_root(), tmp_path_factory.mktemp("wheel"))


def local_platform() -> Platform:
    """The platform of this machine and interpreter, as install.sh will see it."""
    version = ".".join(str(part) for part in sys.version_info[:3])
    return Platform(platform.machine(), version, platform.libc_ver()[1] or "2.17")


@pytest.fixture
def isolated_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """pip without this machine's configuration: no PIP_* variables, no config files, no index."""
    for name in [name for name in os.environ if name.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)


@pytest.fixture(scope="session")
def release_pins() -> Pins:
    """The dependency closure `emr package` pins from this environment."""
    return pinned_requirements(project_metadata(project_root())[1])


@pytest.fixture(scope="session")
def prod_wheelhouse(tmp_path_factory: pytest.TempPathFactory, release_pins: Pins) -> Path:
    """A wheelhouse.tar for config/emr.yaml's nodes, built by `pip download` from a local stand-in index
    (one small wheel per pin), so packaging and launching never reach a package index in tests."""
    folder = tmp_path_factory.mktemp("prod-wheelhouse")
    index = wheels_for_pins(folder / "index", release_pins.lines)
    constraints = write_constraints(folder / "constraints.txt", release_pins, "0.1.0")
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("PIP_")]:
            patch.delenv(name)
        patch.setenv("PIP_CONFIG_FILE", os.devnull)
        return build_wheelhouse(
            constraints,
            folder,
            Platform.of(emr_settings(prod_config().emr)),
            ("--no-index", "--find-links", str(index)),
        )


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A private AWS-API server (moto) on loopback for the whole session."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one INFO line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Clients:
    """Clients for a freshly reset moto server; AWS_ENDPOINT_URL points plain boto3 there too."""
    request = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return Clients(REGION, endpoint_url=moto_endpoint)
