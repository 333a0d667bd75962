"""Keycloak (OIDC) token verification: discovery, a cached JWKS, rotation, fail closed.

The issuer is `{KEYCLOAK_URL}/realms/{KEYCLOAK_REALM}`. Its discovery document names the
JWKS; keys are cached for `jwks_ttl_s`. A token signed with a key the cache lacks triggers
a re-fetch (key rotation); such re-fetches happen at most every `refetch_interval_s` (1 s),
so a flood of forged kids costs the provider one request a second, and a real new key waits
at most that long. When the provider is unreachable,
tokens whose key is cached still verify; any other token is refused: never accepted
unverified.

Keycloak's access tokens carry the client in `azp` and usually `aud: account`, so the
audience check accepts the client id in either. Roles are the union of
`realm_access.roles` and `resource_access.<client>.roles`, restricted to StratMaster's
roles (Keycloak adds its own, such as `offline_access`). The tenant is the claim named by
KEYCLOAK_TENANT_CLAIM (default `tenant`), which a Keycloak mapper puts in the token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
from jwt import exceptions as errors

from stratmaster.identity.principal import KNOWN_ROLES, AuthenticationError, Principal, is_valid_tenant
from stratmaster.identity.verifier import LEEWAY_S, _reason

log = logging.getLogger("stratmaster.identity")

# Asymmetric only (RFC 8725 2.1): never "none", never HMAC with a public key as secret.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
REQUIRED_CLAIMS = ["iss", "exp", "sub"]


class ProviderUnavailable(Exception):
    """The identity provider's discovery document or JWKS could not be read."""


class OidcTokenVerifier:
    """Verifies bearer tokens issued by an OIDC provider (Keycloak) against its published keys."""

    def __init__(self, issuer: str, client_id: str, *, tenant_claim: str = "tenant",
                 algorithms: tuple[str, ...] = ALGORITHMS, leeway_s: float = LEEWAY_S, jwks_ttl_s: float = 300.0,
                 refetch_interval_s: float = 1.0, timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.tenant_claim = tenant_claim
        self.algorithms = tuple(a for a in algorithms if a in ALGORITHMS)
        if not self.algorithms:
            raise ValueError(f"no allowed algorithm among {algorithms}; choose from {ALGORITHMS}")
        self.leeway_s = leeway_s
        self.jwks_ttl_s = jwks_ttl_s
        self.refetch_interval_s = refetch_interval_s
        self._timeout = httpx.Timeout(timeout_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._refetched_at: float | None = None  # the last re-fetch an unknown kid caused
        self._jwks_uri: str | None = None

    # --- keys ---------------------------------------------------------------------------------
    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = httpx.get(url, timeout=self._timeout, follow_redirects=False)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderUnavailable(f"{url}: {exc.__class__.__name__}: {exc}") from None
        if not isinstance(document, dict):
            raise ProviderUnavailable(f"{url}: not a JSON object")
        return document

    def _fetch_keys(self) -> None:
        """Discovery (once), then the JWKS; replaces the cache only when both succeed."""
        if self._jwks_uri is None:
            discovery = self._get_json(f"{self.issuer}/.well-known/openid-configuration")
            if discovery.get("issuer") != self.issuer:
                raise ProviderUnavailable(f"discovery names issuer {discovery.get('issuer')!r}, "
                                          f"expected {self.issuer!r}")
            jwks_uri = discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise ProviderUnavailable("discovery document has no jwks_uri")
            self._jwks_uri = jwks_uri
        document = self._get_json(self._jwks_uri)
        keys: dict[str, jwt.PyJWK] = {}
        for entry in document.get("keys", []):
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or not entry.get("kid"):
                continue
            try:
                keys[str(entry["kid"])] = jwt.PyJWK(entry)
            except errors.PyJWTError:  # a key type this build cannot use: skip it, not the set
                log.warning("skipped an unusable JWKS key", extra={"kid": str(entry.get("kid"))[:64]})
        self._keys = keys
        self._fetched_at = self._clock()
        log.info("identity provider keys fetched", extra={"keys": len(keys)})

    def _key(self, kid: str) -> jwt.PyJWK:
        with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at >= self.jwks_ttl_s
            unknown = kid not in self._keys
            may_refetch = self._refetched_at is None or now - self._refetched_at >= self.refetch_interval_s
            if stale or (unknown and may_refetch):
                if unknown and not stale:
                    self._refetched_at = now
                try:
                    self._fetch_keys()
                except ProviderUnavailable as exc:
                    log.warning("identity provider unreachable", extra={"error": str(exc)[:300]})
                    if kid not in self._keys:  # fail closed: nothing cached verifies this token
                        raise AuthenticationError("identity provider unreachable and no cached key fits") from None
            key = self._keys.get(kid)
        if key is None:
            raise AuthenticationError("unknown signing key")
        return key

    # --- tokens -------------------------------------------------------------------------------
    def verify(self, token: str) -> Principal:
        if not token:
            raise AuthenticationError("missing bearer token")
        try:
            header = jwt.get_unverified_header(token)
        except errors.PyJWTError as exc:
            raise AuthenticationError(_reason(exc)) from None
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise AuthenticationError("algorithm not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthenticationError("token has no key id")
        key = self._key(kid)  # a PyJWK: PyJWT verifies with the key's own algorithm, refusing another
        try:
            claims = jwt.decode(token, key, algorithms=[algorithm], issuer=self.issuer, leeway=self.leeway_s,
                                options={"require": REQUIRED_CLAIMS, "verify_aud": False})
        except errors.PyJWTError as exc:
            raise AuthenticationError(_reason(exc)) from None
        self._check_audience(claims)
        return self._principal(claims)

    def _check_audience(self, claims: dict[str, Any]) -> None:
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
        if self.client_id not in audiences and claims.get("azp") != self.client_id:
            raise AuthenticationError("wrong audience")

    def roles(self, claims: dict[str, Any]) -> tuple[str, ...]:
        found: list[str] = []
        realm = claims.get("realm_access")
        if isinstance(realm, dict) and isinstance(realm.get("roles"), list):
            found += realm["roles"]
        resource = claims.get("resource_access")
        client = resource.get(self.client_id) if isinstance(resource, dict) else None
        if isinstance(client, dict) and isinstance(client.get("roles"), list):
            found += client["roles"]
        return tuple(role for role in KNOWN_ROLES if role in found)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise AuthenticationError("invalid subject claim")
        tenant = claims.get(self.tenant_claim)
        if tenant is None:
            raise AuthenticationError(f"token has no {self.tenant_claim} claim")
        if not is_valid_tenant(tenant):
            raise AuthenticationError(f"invalid {self.tenant_claim} claim")
        try:
            expires_at = datetime.fromtimestamp(int(claims["exp"]), tz=UTC)
        except (OverflowError, OSError, ValueError, TypeError):
            raise AuthenticationError("malformed exp claim") from None
        return Principal(subject=claims["sub"], tenant=str(tenant), roles=self.roles(claims),
                         issuer=self.issuer, expires_at=expires_at)
