"""Role-based access: every protected endpoint of every application has a permission, and
each role gets exactly what `stratmaster.security.rbac` grants it (403 otherwise)."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from deployments.compression import compression_api
from deployments.evals import evals_api
from deployments.gateway import build_gateway_api
from deployments.http import require_principal
from deployments.knowledge import knowledge_api
from deployments.research import research_api
from deployments.router import router_api
from stratmaster.identity import KNOWN_ROLES, LocalIssuer
from stratmaster.security.rbac import ENDPOINTS, ROLE_PERMISSIONS, Permission, permissions_of, rule_for

APPS = {
    "gateway": build_gateway_api,
    "knowledge": lambda: knowledge_api("knowledge", "d"),
    "evals": lambda: evals_api("evals", "d"),
    "compression": lambda: compression_api("compression", "d"),
    "router": lambda: router_api("router", "d"),
    "research": lambda: research_api("research", "d"),
}


def protected_routes(api: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route that verifies a token."""
    found = []
    for route in api.routes:
        if isinstance(route, APIRoute) and any(d.call is require_principal for d in route.dependant.dependencies):
            found += [(method, route.path) for method in sorted(route.methods - {"HEAD"})]
    return found


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


@pytest.fixture(scope="module")
def issuer(tmp_path_factory) -> LocalIssuer:
    return LocalIssuer(tmp_path_factory.mktemp("keys"), audience="stratmaster")


@pytest.mark.parametrize("service", APPS)
def test_every_protected_endpoint_has_a_permission(service):
    routes = protected_routes(APPS[service]())
    assert routes, f"{service} has no protected routes?"
    missing = [f"{method} {path}" for method, path in routes if rule_for(service, method, path) is None]
    assert missing == [], f"add these to stratmaster/security/rbac.py ENDPOINTS: {missing}"


def test_the_table_names_no_endpoint_that_does_not_exist():
    existing = {(service, method, path)
                for service, build in APPS.items() for method, path in protected_routes(build())}
    stale = [key for key in ENDPOINTS if key[0] != "*" and key not in existing]
    assert stale == []


@pytest.mark.parametrize("service", APPS)
def test_each_role_gets_exactly_what_it_is_granted(service, issuer):
    api = APPS[service]()
    api.state.verifier = issuer.verifier()
    with TestClient(api, raise_server_exceptions=False) as client:
        for role in KNOWN_ROLES:
            headers = {"Authorization": f"Bearer {issuer.issue('u', 'acme', (role,), 60)}"}
            for method, path in protected_routes(api):
                granted = rule_for(service, method, path).permission in ROLE_PERMISSIONS[role]
                status = client.request(method, concrete(path), headers=headers, json={}).status_code
                assert (status != 403) == granted, f"{role} {method} {path}: {status}"
                assert status != 401


def test_the_roles_nest_as_documented():
    viewer, analyst, admin = (ROLE_PERMISSIONS[r] for r in ("viewer", "analyst", "admin"))
    assert viewer < analyst < admin == frozenset(Permission)
    assert Permission.AUDIT_READ in admin and Permission.AUDIT_READ not in analyst
    assert Permission.DOCUMENTS_WRITE not in viewer and Permission.ROUTER_COMPLETE not in viewer
    assert Permission.DOCUMENTS_WRITE not in ROLE_PERMISSIONS["service"]
    assert permissions_of(["viewer", "unknown-role"]) == viewer


def test_a_403_names_the_missing_permission_and_who_has_it(issuer):
    api = APPS["knowledge"]()
    api.state.verifier = issuer.verifier()
    with TestClient(api, raise_server_exceptions=False) as client:
        answer = client.post("/documents", json={}, headers={
            "Authorization": f"Bearer {issuer.issue('v', 'acme', ('viewer',), 60)}"})
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["code"] == "forbidden"
    assert error["message"] == ("POST /documents needs the documents:write permission; "
                                "your roles (viewer) do not grant it")
    assert error["details"]["granted_by"] == ["analyst", "admin"]
