"""Keycloak-style tokens against a real OIDC provider process (tests/oidc/provider.mjs).

The provider publishes its discovery document and JWKS under `/realms/<realm>` like
Keycloak; its `/control` routes mint tokens with the claims a test wants and rotate keys.
`make test` installs it (scripts/servers.sh start); each module run starts its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import Depends
from fastapi.testclient import TestClient

from deployments.http import create_api, require_principal
from stratmaster.identity import AuthenticationError, OidcTokenVerifier, Principal
from stratmaster.security.rbac import Permission, Rule

PROVIDER = Path(__file__).resolve().parents[1] / "oidc"
CLIENT = "stratmaster-api"


@dataclass
class Provider:
    issuer: str
    base: str
    process: subprocess.Popen

    def token(self, claims: dict[str, Any] | None = None, *, expires_in: int = 300, kid: str | None = None,
              standard: bool = True) -> str:
        body: dict[str, Any] = {"sub": "user-1", "azp": CLIENT, "tenant": "acme",
                                "realm_access": {"roles": ["analyst", "offline_access"]}} if standard else {}
        body.update(claims or {})
        answer = httpx.post(f"{self.base}/control/token",
                            json={"claims": body, "expires_in": expires_in, **({"kid": kid} if kid else {})})
        answer.raise_for_status()
        return answer.json()["token"]

    def rotate(self) -> str:
        answer = httpx.post(f"{self.base}/control/rotate", json={})
        answer.raise_for_status()
        return answer.json()["kid"]


def _missing(reason: str) -> None:
    if os.environ.get("STRATMASTER_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{reason} (STRATMASTER_REQUIRE_SERVERS=1 forbids skipping; scripts/servers.sh start installs it)")
    pytest.skip(reason)


@contextmanager
def running_provider() -> Iterator[Provider]:
    """The provider process on a free port, stopped on the way out."""
    node = shutil.which("node")
    if node is None:
        _missing("node is not installed")
    if not (PROVIDER / "node_modules" / "oauth2-mock-server").is_dir():
        _missing("the OIDC test provider is not installed (npm ci --prefix tests/oidc)")
    process = subprocess.Popen([node, str(PROVIDER / "provider.mjs"), "--port", "0", "--realm", "stratmaster"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()  # type: ignore[union-attr]
    if not line:
        process.kill()
        raise RuntimeError(f"the OIDC provider did not start: {process.stderr.read()}")  # type: ignore[union-attr]
    ready = json.loads(line)
    try:
        yield Provider(ready["issuer"], f"http://127.0.0.1:{ready['port']}", process)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def provider() -> Iterator[Provider]:
    with running_provider() as running:
        yield running


class CountingVerifier(OidcTokenVerifier):
    """Counts requests to the provider, to show what is fetched when."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetched: list[str] = []

    def _get_json(self, url: str) -> dict[str, Any]:
        self.fetched.append(url.rsplit("/", 1)[-1])
        return super()._get_json(url)


def verifier_for(provider: Provider, **kwargs: Any) -> CountingVerifier:
    return CountingVerifier(provider.issuer, CLIENT, **kwargs)


def reason(verifier: OidcTokenVerifier, token: str) -> str:
    with pytest.raises(AuthenticationError) as refused:
        verifier.verify(token)
    return refused.value.reason


def test_a_keycloak_token_gives_its_subject_tenant_and_known_roles(provider):
    verifier = verifier_for(provider)
    token = provider.token({"resource_access": {CLIENT: {"roles": ["admin"]}, "other-app": {"roles": ["viewer"]}}})
    principal = verifier.verify(token)
    assert (principal.subject, principal.tenant, principal.issuer) == ("user-1", "acme", provider.issuer)
    # realm roles plus this client's roles; Keycloak's own and other clients' roles are not ours
    assert principal.roles == ("admin", "analyst")
    assert verifier.fetched == ["openid-configuration", "jwks"]
    verifier.verify(provider.token())
    assert verifier.fetched == ["openid-configuration", "jwks"], "keys are cached"


def test_the_audience_is_the_client_in_aud_or_azp(provider):
    verifier = verifier_for(provider)
    assert verifier.verify(provider.token({"azp": "someone-else", "aud": ["account", CLIENT]})).tenant == "acme"
    assert verifier.verify(provider.token({"azp": "someone-else", "aud": CLIENT})).tenant == "acme"
    assert reason(verifier, provider.token({"azp": "someone-else", "aud": "account"})) == "wrong audience"


def test_expired_future_and_foreign_tokens_are_refused(provider):
    verifier = verifier_for(provider)
    assert reason(verifier, provider.token(expires_in=-120)) == "token expired"
    assert reason(verifier, provider.token({"nbf": int(time.time()) + 600})) == "token not yet valid"
    assert reason(verifier, provider.token({"iss": "http://127.0.0.1:1/realms/other"})) == "wrong issuer"
    # within the 30 s leeway a just-expired token still passes (clock skew between machines)
    assert verifier.verify(provider.token(expires_in=-5)).subject == "user-1"


def test_tenant_comes_from_the_configured_claim_and_must_be_present(provider):
    assert reason(verifier_for(provider), provider.token({"tenant": None})) == "token has no tenant claim"
    assert reason(verifier_for(provider), provider.token({"tenant": "../Acme"})) == "invalid tenant claim"
    by_org = verifier_for(provider, tenant_claim="org")
    assert by_org.verify(provider.token({"org": "globex"})).tenant == "globex"


def test_a_rotated_key_is_fetched_once_and_a_forged_kid_does_not_flood_the_provider(provider):
    verifier = verifier_for(provider)
    verifier.verify(provider.token())
    new_kid = provider.rotate()
    assert verifier.verify(provider.token(kid=new_kid)).subject == "user-1"
    assert verifier.fetched == ["openid-configuration", "jwks", "jwks"], "one re-fetch for the new key"

    header = jwt.get_unverified_header(provider.token(kid=new_kid))
    assert header["kid"] == new_kid
    forged = jwt.encode({"sub": "x"}, "a-shared-secret-of-thirty-two-bytes", algorithm="HS256",
                        headers={"kid": "forged"})
    assert reason(verifier, forged) == "algorithm not allowed"
    unknown_kid = _with_kid(provider.token(), "no-such-key")
    for _ in range(5):
        assert reason(verifier, unknown_kid) == "unknown signing key"
    assert verifier.fetched.count("jwks") == 2, "re-fetches are rate limited"


def test_it_fails_closed_when_the_provider_is_unreachable(provider):
    verifier = verifier_for(provider, refetch_interval_s=0)
    cached = provider.token()
    verifier.verify(cached)
    other_kid = provider.rotate()
    unseen = provider.token(kid=other_kid)
    provider.process.terminate()
    provider.process.wait(timeout=10)

    assert verifier.verify(cached).subject == "user-1", "a cached key still verifies"
    assert reason(verifier, unseen) == "identity provider unreachable and no cached key fits"
    never_started = OidcTokenVerifier(provider.issuer, CLIENT, timeout_s=1)
    assert reason(never_started, cached) == "identity provider unreachable and no cached key fits"


def test_the_api_answers_401_json_for_a_bad_keycloak_token_and_serves_a_good_one(provider):
    api = create_api("test", title="t", description="d", version="0",
                     permissions={("test", "GET", "/whoami"): Rule(Permission.PLATFORM_READ)})
    api.state.verifier = verifier_for(provider)

    @api.get("/whoami")
    def whoami(principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        return {"tenant": principal.tenant, "roles": list(principal.roles)}

    with TestClient(api) as client:
        ok = client.get("/whoami", headers={"Authorization": f"Bearer {provider.token()}"})
        assert ok.status_code == 200 and ok.json() == {"tenant": "acme", "roles": ["analyst"]}
        expired = client.get("/whoami", headers={"Authorization": f"Bearer {provider.token(expires_in=-120)}"})
        assert expired.status_code == 401
        assert expired.json()["error"]["message"].endswith("token expired")


def _with_kid(token: str, kid: str) -> str:
    """The same token with another kid in its header (the signature no longer matters: it is never checked)."""
    import base64

    head, payload, signature = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    header["kid"] = kid
    encoded = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return f"{encoded}.{payload}.{signature}"
