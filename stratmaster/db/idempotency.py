"""Idempotency keys: a retried request with the same key gets the first answer back.

The key is scoped by tenant and by operation; reusing a key for a different request body
is a client error (409), never a silent replay of an unrelated answer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stratmaster.db.models import IdempotencyRecord

MAX_KEY_LENGTH = 256


class IdempotencyConflict(Exception):
    """The key was already used for a different request."""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    body: dict[str, Any]


def request_fingerprint(payload: Any) -> str:
    """sha256 of the canonical JSON of a request body."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValueError(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters")
    return key


class IdempotencyStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def lookup(self, tenant: str, key: str, scope: str, fingerprint: str) -> StoredResponse | None:
        with Session(self._engine) as session:
            row = session.scalars(select(IdempotencyRecord).where(
                IdempotencyRecord.tenant == tenant, IdempotencyRecord.key == key)).first()
            if row is None:
                return None
            if row.scope != scope or row.request_sha256 != fingerprint:
                raise IdempotencyConflict(f"Idempotency-Key {key!r} was already used for a different request")
            return StoredResponse(row.status_code, dict(row.response_json))

    def save(self, tenant: str, key: str, scope: str, fingerprint: str,
             status_code: int, body: dict[str, Any]) -> StoredResponse:
        """Store the answer; if a concurrent retry stored one first, return that one."""
        try:
            with self._engine.begin() as connection:
                connection.execute(IdempotencyRecord.__table__.insert().values(
                    tenant=tenant, key=key, scope=scope, request_sha256=fingerprint, status_code=status_code,
                    response=body, created_at=datetime.now(UTC)))
        except IntegrityError:
            existing = self.lookup(tenant, key, scope, fingerprint)
            if existing is not None:
                return existing
            raise
        return StoredResponse(status_code, body)
