"""Authentication: verified principals from bearer tokens.

The local issuer is the embedded default; Keycloak (OIDC) is selected by KEYCLOAK_URL.
"""

from __future__ import annotations

from stratmaster.identity.local_issuer import LocalIssuer, jwk_thumbprint
from stratmaster.identity.principal import (
    KNOWN_ROLES,
    AuthenticationError,
    Principal,
    TokenVerifier,
    parse_bearer,
)
from stratmaster.identity.verifier import LocalTokenVerifier
from stratmaster.settings import ConfigurationError, Settings


def create_verifier(settings: Settings) -> TokenVerifier:
    """The verifier for the configured identity backend; never one that accepts unverified tokens."""
    if settings.keycloak_url:
        raise ConfigurationError(
            "KEYCLOAK_URL is set, but OIDC/Keycloak token verification is not implemented yet "
            "in this build (it lands with the security issue); unset KEYCLOAK_URL to use the "
            "local issuer. Refusing to start rather than accept tokens unverified."
        )
    return LocalIssuer(settings.keys_dir, settings.token_audience).verifier()


__all__ = [
    "KNOWN_ROLES", "AuthenticationError", "LocalIssuer", "LocalTokenVerifier", "Principal",
    "TokenVerifier", "create_verifier", "jwk_thumbprint", "parse_bearer",
]
