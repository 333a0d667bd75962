"""The gateway's `/security` routes: the caller's permissions, the audit log, PII scans.

Served by the gateway application (route prefix `/`); the rules these routes report and
enforce are `stratmaster.security.rbac`'s tables.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from pydantic import BaseModel, Field

from deployments.http import require_principal
from stratmaster.identity import Principal
from stratmaster.security.rbac import ENDPOINTS, ROLE_PERMISSIONS, permissions_of

MAX_SCAN_CHARS = 1_000_000


class ScanRequest(BaseModel):
    text: str = Field(max_length=MAX_SCAN_CHARS, description="The text to scan")
    redact: bool = Field(False, description="Also return the text with each finding replaced by [KIND]")


def add_security_routes(api: FastAPI) -> None:
    @api.get("/security/permissions", tags=["security"], summary="The caller's roles and effective permissions")
    def permissions(principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        granted = permissions_of(principal.roles)
        return {
            "subject": principal.subject, "tenant": principal.tenant, "roles": list(principal.roles),
            "permissions": sorted(str(p) for p in granted),
            "endpoints": sorted(f"{method} {'' if service in ('gateway', '*') else '/' + service}{path}"
                                for (service, method, path), rule in ENDPOINTS.items()
                                if rule.permission in granted and service != "*"),
            "roles_known": {role: sorted(str(p) for p in perms) for role, perms in ROLE_PERMISSIONS.items()},
        }

    @api.get("/security/audit-logs", tags=["security"], summary="The tenant's audit records, newest first (admin)")
    async def audit_logs(request: Request, subject: str | None = Query(None, max_length=256),
                         action: str | None = Query(None, max_length=256, description="substring of 'METHOD /path'"),
                         outcome: Literal["success", "denied", "failed"] | None = None,
                         since: datetime | None = None, until: datetime | None = None,
                         limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0),
                         principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        audit = request.app.state.audit()
        entries, total = await asyncio.to_thread(audit.list, principal.tenant, subject=subject, action=action,
                                                 outcome=outcome, since=since, until=until, limit=limit,
                                                 offset=offset)
        return {"records": [e.as_dict() for e in entries], "total": total, "limit": limit, "offset": offset}

    @api.post("/security/pii-scan", tags=["security"], summary="Find PII in a text: kinds and character spans",
              responses={422: {"description": "No text, or more than 1,000,000 characters"}})
    async def pii_scan(body: ScanRequest, principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        from stratmaster.security.pii import detect, redact

        findings = await asyncio.to_thread(detect, body.text)
        counts: dict[str, int] = {}
        for finding in findings:
            counts[str(finding.kind)] = counts.get(str(finding.kind), 0) + 1
        answer: dict[str, Any] = {"findings": [f.as_dict() for f in findings], "counts": counts}
        if body.redact:
            answer["redacted"] = redact(body.text, findings)
        return answer
