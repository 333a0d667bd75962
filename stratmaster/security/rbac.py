"""Who may call what: roles grant permissions, every protected endpoint needs one.

Two tables, read top to bottom. `ROLE_PERMISSIONS` says what each role grants;
`ENDPOINTS` names the permission each protected endpoint needs, keyed by service (the
Serve application), method and route template, and whether a call is written to the audit
log. An endpoint missing from `ENDPOINTS` is refused (403) for every role: a new route is
closed until someone decides who may call it, and a test fails until they do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class Permission(StrEnum):
    PLATFORM_READ = "platform:read"      # who am I, what runs, my permissions
    DOCUMENTS_READ = "documents:read"
    DOCUMENTS_WRITE = "documents:write"  # ingest and delete
    SEARCH = "search"
    GRAPH_READ = "graph:read"
    EVALS_READ = "evals:read"
    EVALS_RUN = "evals:run"              # start benchmark and sweep jobs on the cluster
    EVALS_SCORE = "evals:score"
    COMPRESS = "compression:use"
    ROUTER_READ = "router:read"          # models, routing decisions, budget
    ROUTER_COMPLETE = "router:complete"  # spends the tenant's model budget
    ROUTER_FEEDBACK = "router:feedback"
    LEDGER_READ = "ledger:read"          # the tenant's model calls and their cost
    RESEARCH_READ = "research:read"
    RESEARCH_RUN = "research:run"
    SOURCES_MANAGE = "sources:manage"    # which web hosts research may fetch from
    PII_SCAN = "pii:scan"
    AUDIT_READ = "audit:read"


P = Permission
_VIEWER = frozenset({P.PLATFORM_READ, P.DOCUMENTS_READ, P.SEARCH, P.GRAPH_READ, P.EVALS_READ, P.ROUTER_READ,
                     P.RESEARCH_READ})
_ANALYST = _VIEWER | {P.DOCUMENTS_WRITE, P.EVALS_RUN, P.EVALS_SCORE, P.COMPRESS, P.ROUTER_COMPLETE,
                      P.ROUTER_FEEDBACK, P.LEDGER_READ, P.RESEARCH_RUN, P.PII_SCAN}

ROLE_PERMISSIONS: Mapping[str, frozenset[Permission]] = {
    # Reads the tenant's knowledge, runs and briefs; changes nothing, spends nothing.
    "viewer": _VIEWER,
    # Works with the platform: ingests, researches, runs evals, spends the model budget.
    "analyst": _ANALYST,
    # Everything, including the audit log.
    "admin": frozenset(Permission),
    # Another service or a worker acting for a tenant: reads, searches, compresses, calls models.
    "service": frozenset({P.PLATFORM_READ, P.DOCUMENTS_READ, P.SEARCH, P.GRAPH_READ, P.COMPRESS, P.EVALS_SCORE,
                          P.ROUTER_READ, P.ROUTER_COMPLETE, P.ROUTER_FEEDBACK, P.RESEARCH_READ, P.PII_SCAN}),
}


@dataclass(frozen=True, slots=True)
class Rule:
    permission: Permission
    audited: bool = False  # writes and administrative reads go to the audit log


R = Rule
ANY_SERVICE = "*"

ENDPOINTS: Mapping[tuple[str, str, str], Rule] = {
    # every service application
    (ANY_SERVICE, "GET", "/info"): R(P.PLATFORM_READ),
    # gateway
    ("gateway", "GET", "/me"): R(P.PLATFORM_READ),
    ("gateway", "GET", "/security/permissions"): R(P.PLATFORM_READ),
    ("gateway", "GET", "/security/audit-logs"): R(P.AUDIT_READ, audited=True),
    ("gateway", "POST", "/security/pii-scan"): R(P.PII_SCAN),
    # knowledge
    ("knowledge", "POST", "/documents"): R(P.DOCUMENTS_WRITE, audited=True),
    ("knowledge", "GET", "/documents/{document_id:path}"): R(P.DOCUMENTS_READ),
    ("knowledge", "DELETE", "/documents/{document_id:path}"): R(P.DOCUMENTS_WRITE, audited=True),
    ("knowledge", "POST", "/search"): R(P.SEARCH),
    ("knowledge", "GET", "/graph/entities"): R(P.GRAPH_READ),
    ("knowledge", "GET", "/graph/entities/{entity_id}/neighbors"): R(P.GRAPH_READ),
    ("knowledge", "GET", "/graph/communities"): R(P.GRAPH_READ),
    ("knowledge", "GET", "/stats"): R(P.DOCUMENTS_READ),
    # evals
    ("evals", "POST", "/runs"): R(P.EVALS_RUN, audited=True),
    ("evals", "GET", "/runs/{run_id}"): R(P.EVALS_READ),
    ("evals", "GET", "/runs"): R(P.EVALS_READ),
    ("evals", "POST", "/score"): R(P.EVALS_SCORE),
    # compression
    ("compression", "POST", "/compress"): R(P.COMPRESS),
    # router: every completion is already a ledger row (tenant, model, tokens, cost,
    # outcome), so the audit log does not repeat it; feedback changes the recommender.
    ("router", "POST", "/complete"): R(P.ROUTER_COMPLETE),
    ("router", "POST", "/route"): R(P.ROUTER_READ),
    ("router", "POST", "/feedback"): R(P.ROUTER_FEEDBACK, audited=True),
    ("router", "GET", "/models"): R(P.ROUTER_READ),
    ("router", "GET", "/ledger"): R(P.LEDGER_READ),
    ("router", "GET", "/budget"): R(P.ROUTER_READ),
    # research
    ("research", "POST", "/runs"): R(P.RESEARCH_RUN, audited=True),
    ("research", "GET", "/runs/{run_id}"): R(P.RESEARCH_READ),
    ("research", "GET", "/runs"): R(P.RESEARCH_READ),
    ("research", "POST", "/runs/{run_id}/cancel"): R(P.RESEARCH_RUN, audited=True),
    ("research", "GET", "/runs/{run_id}/brief"): R(P.RESEARCH_READ),
    ("research", "GET", "/sources/allowlist"): R(P.RESEARCH_READ),
    ("research", "PUT", "/sources/allowlist"): R(P.SOURCES_MANAGE, audited=True),
    ("research", "POST", "/sources"): R(P.RESEARCH_RUN, audited=True),
}


def permissions_of(roles: Iterable[str]) -> frozenset[Permission]:
    """The union of what the roles grant; unknown roles grant nothing."""
    granted: set[Permission] = set()
    for role in roles:
        granted |= ROLE_PERMISSIONS.get(role, frozenset())
    return frozenset(granted)


def roles_granting(permission: Permission) -> list[str]:
    return [role for role, granted in ROLE_PERMISSIONS.items() if permission in granted]


def rule_for(service: str, method: str, path: str,
             table: Mapping[tuple[str, str, str], Rule] = ENDPOINTS) -> Rule | None:
    """The endpoint's rule (its service's own first, then one for every service), or None."""
    return table.get((service, method.upper(), path)) or table.get((ANY_SERVICE, method.upper(), path))
