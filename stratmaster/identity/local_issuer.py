"""Signs tokens with a local Ed25519 key: the embedded identity backend.

The key lives under the settings' keys folder so every Serve replica on the machine
verifies with the same key, whichever process created it first.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from stratmaster.identity.principal import KNOWN_ROLES, is_valid_tenant
from stratmaster.identity.verifier import LocalTokenVerifier
from stratmaster.settings import ConfigurationError

KEY_FILE = "local-issuer-ed25519.pem"


def jwk_thumbprint(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 thumbprint of an Ed25519 key (RFC 8037 OKP members, sorted, no spaces)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def load_or_create_key(keys_dir: Path) -> Ed25519PrivateKey:
    """The key in `keys_dir`, created if absent.

    Creation writes a complete private temp file and hard-links it into place: the link
    fails if another process got there first, and then everyone reads the winner's key.
    Readers never see a half-written file.
    """
    path = keys_dir / KEY_FILE
    if not path.exists():
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        fd, tmp = tempfile.mkstemp(dir=keys_dir, prefix=".key-", suffix=".tmp")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # lost the race: use the winner's key
            _fsync_dir(keys_dir)
        finally:
            os.unlink(tmp)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"{path} does not hold an Ed25519 private key")
    return key


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalIssuer:
    """Issues EdDSA JWTs for development and single-machine deployments."""

    def __init__(self, keys_dir: Path, audience: str, issuer: str = "stratmaster-local",
                 clock: Callable[[], float] = time.time) -> None:
        self.keys_dir = Path(keys_dir)
        self.audience = audience
        self.issuer = issuer
        self._clock = clock
        self._key: Ed25519PrivateKey | None = None
        self._kid = ""
        self._lock = threading.Lock()

    def _signing_key(self) -> Ed25519PrivateKey:
        with self._lock:
            if self._key is None:
                self._key = load_or_create_key(self.keys_dir)
                self._kid = jwk_thumbprint(self._key.public_key())
            return self._key

    @property
    def kid(self) -> str:
        self._signing_key()
        return self._kid

    def issue(self, subject: str, tenant: str, roles: Sequence[str], ttl_s: float) -> str:
        if not subject:
            raise ValueError("subject must be non-empty")
        if not is_valid_tenant(tenant):
            raise ValueError(f"tenant must be 1-64 characters of [a-z0-9_-], got {tenant!r}")
        if isinstance(roles, str):
            raise TypeError("roles must be a sequence of role names, not a string")
        unknown = [role for role in roles if role not in KNOWN_ROLES]
        if unknown:
            raise ValueError(f"unknown roles {unknown}; known roles are {list(KNOWN_ROLES)}")
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s!r}")
        key = self._signing_key()
        now = int(self._clock())
        claims = {
            "iss": self.issuer, "aud": self.audience, "sub": subject, "tenant": tenant,
            "roles": list(dict.fromkeys(roles)), "iat": now, "nbf": now,
            "exp": now + int(ttl_s), "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": self._kid})

    def verifier(self) -> LocalTokenVerifier:
        """A verifier holding only the public key (created here if no one has yet)."""
        public_key = self._signing_key().public_key()
        return LocalTokenVerifier(public_key, kid=self._kid, audience=self.audience, issuer=self.issuer)
