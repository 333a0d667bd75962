"""Token verification: fail closed, with a reason a client can act on."""

from __future__ import annotations

from datetime import UTC, datetime

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jwt import exceptions as errors

from stratmaster.identity.principal import KNOWN_ROLES, AuthenticationError, Principal, is_valid_tenant

ALGORITHMS = ["EdDSA"]  # never taken from the token: see RFC 8725 section 2.1
REQUIRED_CLAIMS = ["iss", "aud", "exp", "sub", "tenant"]
LEEWAY_S = 30  # clock skew between machines


def _reason(exc: errors.PyJWTError) -> str:
    # Order matters: InvalidSignatureError is a DecodeError.
    match exc:
        case errors.ExpiredSignatureError():
            return "token expired"
        case errors.ImmatureSignatureError():
            return "token not yet valid"
        case errors.InvalidIssuedAtError():
            return "malformed iat claim"
        case errors.InvalidSubjectError():
            return "invalid subject claim"
        case errors.InvalidAudienceError():
            return "wrong audience"
        case errors.InvalidIssuerError():
            return "wrong issuer"
        case errors.InvalidSignatureError():
            return "bad signature"
        case errors.InvalidAlgorithmError():
            return "algorithm not allowed"
        case errors.MissingRequiredClaimError():
            return f"token has no {exc.claim} claim"
        case errors.DecodeError():
            return "malformed token"
        case _:
            return "invalid token"


class LocalTokenVerifier:
    """Verifies tokens from LocalIssuer with its public key only."""

    def __init__(self, public_key: Ed25519PublicKey, kid: str, audience: str, issuer: str,
                 leeway_s: float = LEEWAY_S) -> None:
        self._public_key = public_key
        self.kid = kid
        self.audience = audience
        self.issuer = issuer
        self.leeway_s = leeway_s

    def verify(self, token: str) -> Principal:
        if not token:
            raise AuthenticationError("missing bearer token")
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in ALGORITHMS:
                raise AuthenticationError("algorithm not allowed")
            if header.get("kid") != self.kid:
                raise AuthenticationError("unknown signing key")
            claims = jwt.decode(
                token, self._public_key, algorithms=ALGORITHMS, audience=self.audience,
                issuer=self.issuer, leeway=self.leeway_s, options={"require": REQUIRED_CLAIMS},
            )
        except errors.PyJWTError as exc:
            raise AuthenticationError(_reason(exc)) from None
        return self._principal(claims)

    def _principal(self, claims: dict[str, object]) -> Principal:
        if not claims["sub"]:
            raise AuthenticationError("invalid subject claim")
        tenant = claims["tenant"]
        if not is_valid_tenant(tenant):
            raise AuthenticationError("invalid tenant claim")
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise AuthenticationError("roles claim must be a list of strings")
        for role in roles:
            if role not in KNOWN_ROLES:
                raise AuthenticationError(f"unknown role {role[:64]}")
        try:
            expires_at = datetime.fromtimestamp(int(claims["exp"]), tz=UTC)  # type: ignore[call-overload]
        except (OverflowError, OSError, ValueError):
            raise AuthenticationError("malformed exp claim") from None
        return Principal(subject=str(claims["sub"]), tenant=str(tenant), roles=tuple(roles),
                         issuer=str(claims["iss"]), expires_at=expires_at)
