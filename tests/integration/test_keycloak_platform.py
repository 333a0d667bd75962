"""The platform started with KEYCLOAK_URL, as in production: every service accepts the OIDC
provider's tokens (realm and client roles, tenant claim) and refuses local-issuer ones.

A platform of its own (`stratmaster up` in a subprocess: one process may join only one Ray
cluster) against the real OIDC provider process of tests/oidc on loopback ports.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from platform_process import platform_process
from test_oidc_provider import CLIENT, Provider, running_provider

from stratmaster.identity import LocalIssuer

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with running_provider() as running:
        yield running


@pytest.fixture(scope="module")
def keycloak_platform(provider) -> Iterator[tuple[str, Path]]:
    with platform_process("sm-oidc-", {"KEYCLOAK_URL": provider.base, "KEYCLOAK_REALM": "stratmaster",
                                       "KEYCLOAK_CLIENT_ID": CLIENT}) as running:
        yield running


def test_every_service_takes_keycloak_tokens_and_only_those(keycloak_platform, provider):
    base, data_dir = keycloak_platform
    analyst = {"Authorization": f"Bearer {provider.token({'tenant': 'acme'})}"}
    admin = {"Authorization": "Bearer " + provider.token({"tenant": "acme",
                                                          "resource_access": {CLIENT: {"roles": ["admin"]}}})}
    with httpx.Client(base_url=base, timeout=120) as http:
        me = http.get("/me", headers=analyst).json()
        assert (me["tenant"], me["roles"], me["issuer"]) == ("acme", ["analyst"], provider.issuer)
        for service in ("knowledge", "research", "router", "evals", "compression"):
            answer = http.get(f"/{service}/info", headers=analyst)
            assert answer.status_code == 200, (service, answer.text)
            assert answer.json()["caller"]["tenant"] == "acme"
        assert http.get("/security/audit-logs", headers=analyst).status_code == 403
        assert http.get("/security/audit-logs", headers=admin).status_code == 200
        local = LocalIssuer(data_dir / "keys-elsewhere", audience="stratmaster").issue("x", "acme", ("admin",), 600)
        refused = http.get("/me", headers={"Authorization": f"Bearer {local}"})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthenticated"
        expired = http.get("/me", headers={"Authorization": f"Bearer {provider.token(expires_in=-120)}"})
        assert expired.status_code == 401 and expired.json()["error"]["message"] == "token expired"
        rotated = provider.rotate()
        time.sleep(1.1)  # the local token's unknown kid just caused a re-fetch: one a second at most
        fresh = http.get("/me", headers={"Authorization": f"Bearer {provider.token(kid=rotated)}"})
        assert fresh.status_code == 200, "a rotated key is fetched by every replica that meets it"
