"""Logs never carry token values or the personal data a request contained."""

from __future__ import annotations

import logging

from fastapi.testclient import TestClient

from deployments.gateway import build_gateway_api
from stratmaster.identity import LocalIssuer
from stratmaster.logs import configure_logging

SECRETS = ["ana@example.com", "4111 1111 1111 1111", "+44 20 7946 0958", "GB82 WEST 1234 5698 7654 32"]


def test_pii_scans_and_refused_tokens_leave_no_trace_in_the_logs(tmp_path, caplog):
    configure_logging("gateway", "DEBUG")
    issuer = LocalIssuer(tmp_path / "keys", audience="stratmaster")
    api = build_gateway_api()
    api.state.verifier = issuer.verifier()
    token = issuer.issue("ana", "acme", ("analyst",), 600)
    forged = token[:-6] + "AAAAAA"
    with caplog.at_level(logging.DEBUG), TestClient(api, raise_server_exceptions=False) as client:
        scan = client.post("/security/pii-scan", json={"text": " ".join(SECRETS), "redact": True},
                           headers={"Authorization": f"Bearer {token}"})
        assert scan.status_code == 200 and scan.json()["counts"] == {"email": 1, "card_number": 1, "phone": 1,
                                                                       "iban": 1}
        assert client.get("/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
        assert client.post("/security/pii-scan", json={"text": 5},
                           headers={"Authorization": f"Bearer {token}"}).status_code == 422
    logged = "\n".join(record.getMessage() + " " + str(record.__dict__) for record in caplog.records)
    assert "request" in logged, "the access log was captured"
    for secret in [*SECRETS, token, forged, token.split(".")[2]]:
        assert secret not in logged
