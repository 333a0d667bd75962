"""Authentication: verified principals from bearer tokens.

The local issuer is the embedded default; Keycloak (OIDC) is selected by KEYCLOAK_URL.
"""

from __future__ import annotations

from stratmaster.identity.local_issuer import LocalIssuer, jwk_thumbprint
from stratmaster.identity.oidc import OidcTokenVerifier
from stratmaster.identity.principal import (
    KNOWN_ROLES,
    AuthenticationError,
    Principal,
    TokenVerifier,
    parse_bearer,
)
from stratmaster.identity.verifier import LocalTokenVerifier
from stratmaster.settings import Settings


def create_verifier(settings: Settings) -> TokenVerifier:
    """The verifier for the configured identity backend; never one that accepts unverified tokens."""
    if settings.keycloak_issuer:
        assert settings.keycloak_client_id  # Settings requires it with KEYCLOAK_URL
        return OidcTokenVerifier(settings.keycloak_issuer, settings.keycloak_client_id,
                                 tenant_claim=settings.keycloak_tenant_claim)
    return LocalIssuer(settings.keys_dir, settings.token_audience).verifier()


__all__ = [
    "KNOWN_ROLES", "AuthenticationError", "LocalIssuer", "LocalTokenVerifier", "OidcTokenVerifier", "Principal",
    "TokenVerifier", "create_verifier", "jwk_thumbprint", "parse_bearer",
]
