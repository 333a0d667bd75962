"""Local issuer and verifier: round trip, every rejection path, and key sharing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import multiprocessing
import stat
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import ValidationError

from stratmaster.identity import (
    KNOWN_ROLES,
    AuthenticationError,
    LocalIssuer,
    OidcTokenVerifier,
    Principal,
    create_verifier,
    jwk_thumbprint,
    parse_bearer,
)
from stratmaster.identity.local_issuer import KEY_FILE, load_or_create_key
from stratmaster.settings import Settings

AUDIENCE = "stratmaster"


@pytest.fixture
def issuer(tmp_path: Path) -> LocalIssuer:
    return LocalIssuer(tmp_path / "keys", AUDIENCE)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64_json(obj: object) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {"iss": "stratmaster-local", "aud": AUDIENCE, "sub": "alice", "tenant": "acme",
                               "roles": ["viewer"], "iat": now, "nbf": now, "exp": now + 300}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign_with_issuer_key(issuer: LocalIssuer, payload: dict[str, object]) -> str:
    """A token signed by the issuer's own key, for payloads `issue()` refuses to make."""
    return jwt.encode(payload, load_or_create_key(issuer.keys_dir), algorithm="EdDSA", headers={"kid": issuer.kid})


def reason(issuer: LocalIssuer, token: str) -> str:
    with pytest.raises(AuthenticationError) as info:
        issuer.verifier().verify(token)
    return info.value.reason


def test_round_trip(issuer: LocalIssuer) -> None:
    token = issuer.issue("alice", "acme", ["analyst", "viewer"], ttl_s=600)
    principal = issuer.verifier().verify(token)
    assert principal == Principal(subject="alice", tenant="acme", roles=("analyst", "viewer"),
                                  issuer="stratmaster-local", expires_at=principal.expires_at)
    assert abs((principal.expires_at - datetime.now(UTC)).total_seconds() - 600) < 5
    assert principal.has_role("analyst") and not principal.has_role("admin")
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA" and header["kid"] == issuer.kid
    payload = jwt.decode(token, options={"verify_signature": False})
    assert set(payload) == {"iss", "aud", "sub", "tenant", "roles", "iat", "nbf", "exp", "jti"}


def test_principal_is_frozen(issuer: LocalIssuer) -> None:
    principal = issuer.verifier().verify(issuer.issue("alice", "acme", ["viewer"], 60))
    with pytest.raises(ValidationError):
        principal.tenant = "other"  # type: ignore[misc]


def test_key_files_are_private(issuer: LocalIssuer) -> None:
    issuer.kid  # noqa: B018 - first use creates the key
    assert stat.S_IMODE(issuer.keys_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((issuer.keys_dir / KEY_FILE).stat().st_mode) == 0o600
    assert [p.name for p in issuer.keys_dir.iterdir()] == [KEY_FILE]


def test_kid_is_the_rfc7638_thumbprint() -> None:
    # RFC 8037 appendix A.2/A.3: the Ed25519 example key and its thumbprint.
    x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    key = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "="))
    assert jwk_thumbprint(key) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_expired_token(tmp_path: Path) -> None:
    past = LocalIssuer(tmp_path / "keys", AUDIENCE, clock=lambda: time.time() - 3600)
    assert reason(past, past.issue("alice", "acme", ["viewer"], ttl_s=60)) == "token expired"


def test_leeway_accepts_a_token_expired_seconds_ago(tmp_path: Path) -> None:
    skewed = LocalIssuer(tmp_path / "keys", AUDIENCE, clock=lambda: time.time() - 70)
    skewed.verifier().verify(skewed.issue("alice", "acme", ["viewer"], ttl_s=60))  # expired 10 s ago


def test_token_not_yet_valid(issuer: LocalIssuer) -> None:
    now = int(time.time())
    assert reason(issuer, sign_with_issuer_key(issuer, claims(nbf=now + 3600, exp=now + 7200))) == "token not yet valid"
    assert reason(issuer, sign_with_issuer_key(issuer, claims(iat=now + 3600, exp=now + 7200))) == "token not yet valid"


def test_token_from_another_key(issuer: LocalIssuer, tmp_path: Path) -> None:
    other = LocalIssuer(tmp_path / "other-keys", AUDIENCE)
    assert other.kid != issuer.kid
    assert reason(issuer, other.issue("alice", "acme", ["viewer"], 60)) == "unknown signing key"
    # The same forgery claiming our kid fails on the signature itself.
    forged = jwt.encode(claims(), load_or_create_key(other.keys_dir), algorithm="EdDSA", headers={"kid": issuer.kid})
    assert reason(issuer, forged) == "bad signature"


def test_wrong_audience(issuer: LocalIssuer, tmp_path: Path) -> None:
    elsewhere = LocalIssuer(issuer.keys_dir, "another-service")
    assert reason(issuer, elsewhere.issue("alice", "acme", ["viewer"], 60)) == "wrong audience"


def test_wrong_issuer(issuer: LocalIssuer) -> None:
    assert reason(issuer, sign_with_issuer_key(issuer, claims(iss="someone-else"))) == "wrong issuer"


def test_tampered_payload(issuer: LocalIssuer) -> None:
    header, payload, signature = issuer.issue("alice", "acme", ["viewer"], 60).split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body.update(tenant="victim", roles=["admin"])
    assert reason(issuer, f"{header}.{b64_json(body)}.{signature}") == "bad signature"


def test_alg_none_rejected(issuer: LocalIssuer) -> None:
    token = f"{b64_json({'alg': 'none', 'typ': 'JWT', 'kid': issuer.kid})}.{b64_json(claims())}."
    assert reason(issuer, token) == "algorithm not allowed"


def test_hs256_with_public_key_as_secret_rejected(issuer: LocalIssuer) -> None:
    # The classic algorithm-confusion forgery: HMAC keyed with the (public) verification key.
    public = load_or_create_key(issuer.keys_dir).public_key()
    for secret in (public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
                   public.public_bytes(Encoding.Raw, PublicFormat.Raw)):
        signing_input = f"{b64_json({'alg': 'HS256', 'typ': 'JWT', 'kid': issuer.kid})}.{b64_json(claims())}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        assert reason(issuer, f"{signing_input}.{b64(mac)}") == "algorithm not allowed"


@pytest.mark.parametrize("missing", ["tenant", "sub", "exp", "aud", "iss"])
def test_missing_required_claim(issuer: LocalIssuer, missing: str) -> None:
    assert reason(issuer, sign_with_issuer_key(issuer, claims(**{missing: None}))) == f"token has no {missing} claim"


@pytest.mark.parametrize("tenant", ["", "ACME", "acme corp", "a" * 65, "acme\n", 42, "../etc"])
def test_invalid_tenant_claim(issuer: LocalIssuer, tenant: object) -> None:
    assert reason(issuer, sign_with_issuer_key(issuer, claims(tenant=tenant))) == "invalid tenant claim"


@pytest.mark.parametrize("subject", ["", 42])
def test_invalid_subject_claim(issuer: LocalIssuer, subject: object) -> None:
    assert reason(issuer, sign_with_issuer_key(issuer, claims(sub=subject))) == "invalid subject claim"


def test_unknown_role_rejected_at_verify(issuer: LocalIssuer) -> None:
    token = sign_with_issuer_key(issuer, claims(roles=["viewer", "superuser"]))
    assert reason(issuer, token) == "unknown role superuser"
    not_a_list = sign_with_issuer_key(issuer, claims(roles="admin"))
    assert reason(issuer, not_a_list) == "roles claim must be a list of strings"


def test_missing_roles_claim_means_no_roles(issuer: LocalIssuer) -> None:
    assert issuer.verifier().verify(sign_with_issuer_key(issuer, claims(roles=None))).roles == ()


def test_garbage_tokens(issuer: LocalIssuer) -> None:
    assert reason(issuer, "") == "missing bearer token"
    assert reason(issuer, "not-a-jwt") == "malformed token"
    assert reason(issuer, "a.b.c") == "malformed token"


def test_issue_validates_its_arguments(issuer: LocalIssuer) -> None:
    with pytest.raises(ValueError, match="unknown roles"):
        issuer.issue("alice", "acme", ["viewer", "root"], 60)
    with pytest.raises(ValueError):
        issuer.issue("alice", "Acme Corp", ["viewer"], 60)
    with pytest.raises(ValueError):
        issuer.issue("", "acme", ["viewer"], 60)
    with pytest.raises(ValueError):
        issuer.issue("alice", "acme", ["viewer"], 0)
    with pytest.raises(TypeError):
        issuer.issue("alice", "acme", "admin", 60)
    assert KNOWN_ROLES == ("admin", "analyst", "viewer", "service")


def test_concurrent_issuers_in_threads_share_one_key(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    barrier = threading.Barrier(8)
    kids: list[str] = []

    def start() -> None:
        barrier.wait()
        kids.append(LocalIssuer(keys_dir, AUDIENCE).kid)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(kids) == 8 and len(set(kids)) == 1
    assert [p.name for p in keys_dir.iterdir()] == [KEY_FILE]  # no temp files left


def _kid_in_subprocess(keys_dir: str, start_at: float) -> str:
    time.sleep(max(0.0, start_at - time.time()))
    return LocalIssuer(Path(keys_dir), AUDIENCE).kid


def test_concurrent_issuers_in_processes_share_one_key(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    start_at = time.time() + 2.0  # after every spawned child has imported
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        kids = pool.starmap(_kid_in_subprocess, [(str(keys_dir), start_at)] * 4)
    assert len(set(kids)) == 1
    assert LocalIssuer(keys_dir, AUDIENCE).kid == kids[0]
    assert [p.name for p in keys_dir.iterdir()] == [KEY_FILE]


@pytest.mark.parametrize(("header", "expected"), [
    (None, "missing bearer token"), ("", "missing bearer token"), ("   ", "missing bearer token"),
    ("Basic dXNlcjpwYXNz", "malformed Authorization header"), ("Bearer", "malformed Authorization header"),
    ("Bearer a b", "malformed Authorization header"), ("Token abc", "malformed Authorization header"),
])
def test_parse_bearer_rejects(header: str | None, expected: str) -> None:
    with pytest.raises(AuthenticationError) as info:
        parse_bearer(header)
    assert info.value.reason == expected


@pytest.mark.parametrize("header", ["Bearer abc.def.ghi", "bearer abc.def.ghi", "  Bearer   abc.def.ghi "])
def test_parse_bearer_accepts(header: str) -> None:
    assert parse_bearer(header) == "abc.def.ghi"


def test_create_verifier_uses_local_issuer(tmp_path: Path) -> None:
    settings = Settings(STRATMASTER_DATA_DIR=tmp_path, KEYCLOAK_URL=None)
    verifier = create_verifier(settings)  # creates the key: replicas start before any token exists
    issuer = LocalIssuer(settings.keys_dir, settings.token_audience)
    assert verifier.verify(issuer.issue("alice", "acme", ["admin"], 60)).roles == ("admin",)


def test_create_verifier_with_keycloak_verifies_against_the_realm(tmp_path: Path) -> None:
    settings = Settings(STRATMASTER_DATA_DIR=tmp_path, KEYCLOAK_URL="http://keycloak:8080/",
                        KEYCLOAK_REALM="stratmaster", KEYCLOAK_CLIENT_ID="api", KEYCLOAK_TENANT_CLAIM="org")
    verifier = create_verifier(settings)
    assert isinstance(verifier, OidcTokenVerifier)
    assert (verifier.issuer, verifier.client_id, verifier.tenant_claim) == (
        "http://keycloak:8080/realms/stratmaster", "api", "org")
    assert not settings.keys_dir.exists(), "no local signing key is made when Keycloak signs"
