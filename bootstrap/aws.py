"""boto3 clients for the launcher, made in one place so tests can point them at a local endpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3


@dataclass
class Clients:
    """Lazily made boto3 clients for one region.

    ``endpoint_url`` is for tests against a local AWS-API server; left unset, boto3's own lookup applies
    (including the ``AWS_ENDPOINT_URL`` environment variable).
    """

    region: str
    endpoint_url: str | None = None
    _made: dict[str, Any] = field(default_factory=dict, repr=False)

    def __call__(self, service: str) -> Any:
        if service not in self._made:
            session = boto3.session.Session()
            self._made[service] = session.client(
                service, region_name=self.region, endpoint_url=self.endpoint_url
            )
        return self._made[service]
