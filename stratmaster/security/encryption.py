"""Encryption at rest: AES-256-GCM with named keys, so keys can rotate without re-writing.

`STRATMASTER_ENCRYPTION_KEYS` holds `id=base64key` pairs separated by commas; the first is
the active key (new objects), the others still decrypt what they wrote. Rotation: put the
new key first and keep the old ones until every object has been re-written (the
`compress_corpus` pipeline re-writes objects, or leave them: old keys keep reading).

An encrypted payload is self-describing: a magic, the key id, a 96-bit random nonce, then
ciphertext and tag. The additional authenticated data binds it to where it is stored
(`<tenant>/<key>`), so a payload copied to another tenant's key fails to decrypt instead
of being served there.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"SMENC1\x00"
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
NONCE_BYTES = 12


class EncryptionError(ValueError):
    """A payload that cannot be decrypted: unknown key, wrong place, or tampered with."""


@dataclass(frozen=True)
class Keyring:
    """Named AES-256 keys; `active` encrypts, every key decrypts."""

    keys: dict[str, bytes] = field(repr=False)
    active: str

    def __post_init__(self) -> None:
        if self.active not in self.keys:
            raise ValueError(f"active key {self.active!r} is not in the keyring")
        for kid, key in self.keys.items():
            if not _KEY_ID.fullmatch(kid):
                raise ValueError(f"key id {kid!r} must match [A-Za-z0-9._-]{{1,64}}")
            if len(key) != 32:
                raise ValueError(f"key {kid!r} is {len(key)} bytes; AES-256 needs 32")

    @classmethod
    def parse(cls, spec: str) -> Keyring:
        """`id=base64key,...`; the first is active. ValueError says which entry is wrong."""
        keys: dict[str, bytes] = {}
        for position, entry in enumerate(part.strip() for part in spec.split(",")):
            kid, sep, encoded = entry.partition("=")
            if not sep or not kid:
                raise ValueError(f"entry {position + 1} is not id=base64key")
            if kid in keys:
                raise ValueError(f"key id {kid!r} appears twice")
            try:
                keys[kid] = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"key {kid!r} is not base64") from None
        if not keys:
            raise ValueError("no keys")
        return cls(keys, next(iter(keys)))

    @staticmethod
    def generate_key() -> str:
        """A fresh base64 key for the variable (`python -m stratmaster.security.encryption`)."""
        return base64.b64encode(os.urandom(32)).decode()

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        kid = self.active.encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.keys[self.active]).encrypt(nonce, plaintext, MAGIC + kid + aad)
        return MAGIC + bytes([len(kid)]) + kid + nonce + sealed

    def decrypt(self, payload: bytes, aad: bytes) -> bytes:
        kid = key_id_of(payload)
        if kid is None:
            raise EncryptionError("not an encrypted payload")
        key = self.keys.get(kid)
        if key is None:
            raise EncryptionError(f"encrypted with key {kid!r}, which STRATMASTER_ENCRYPTION_KEYS does not hold")
        start = len(MAGIC) + 1 + len(kid)
        nonce, sealed = payload[start:start + NONCE_BYTES], payload[start + NONCE_BYTES:]
        try:
            return AESGCM(key).decrypt(nonce, sealed, MAGIC + kid.encode() + aad)
        except InvalidTag:
            raise EncryptionError(f"payload under key {kid!r} fails authentication (tampered with, "
                                  "or stored under another name)") from None


def key_id_of(payload: bytes) -> str | None:
    """The key id of an encrypted payload, or None when it is not one."""
    if not payload.startswith(MAGIC) or len(payload) < len(MAGIC) + 1:
        return None
    length = payload[len(MAGIC)]
    kid = payload[len(MAGIC) + 1:len(MAGIC) + 1 + length]
    try:
        decoded = kid.decode("ascii")
    except UnicodeDecodeError:
        return None
    return decoded if _KEY_ID.fullmatch(decoded) else None


if __name__ == "__main__":
    print(f"new-key={Keyring.generate_key()}")
