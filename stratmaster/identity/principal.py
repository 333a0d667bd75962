"""Who is calling: the verified identity every handler receives, and its errors."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict

KNOWN_ROLES: tuple[str, ...] = ("admin", "analyst", "viewer", "service")

# Tenants become key prefixes, folder names and metric-free log fields: keep them tame.
_TENANT = re.compile(r"[a-z0-9_-]{1,64}")


class AuthenticationError(Exception):
    """A request could not be authenticated; `reason` is safe to return in a JSON 401."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Principal(BaseModel):
    """A caller as established by a verified token; the only source of `tenant`."""

    model_config = ConfigDict(frozen=True)

    subject: str
    tenant: str
    roles: tuple[str, ...]
    issuer: str
    expires_at: datetime

    def has_role(self, role: str) -> bool:
        return role in self.roles


class TokenVerifier(Protocol):
    def verify(self, token: str) -> Principal:
        """The token's principal; raises AuthenticationError on any doubt."""
        ...


def is_valid_tenant(tenant: object) -> bool:
    return isinstance(tenant, str) and _TENANT.fullmatch(tenant) is not None


def parse_bearer(authorization_header: str | None) -> str:
    """The token from `Authorization: Bearer <token>`."""
    if authorization_header is None or not authorization_header.strip():
        raise AuthenticationError("missing bearer token")
    parts = authorization_header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise AuthenticationError("malformed Authorization header")
    return parts[1]
