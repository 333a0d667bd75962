"""The one middleware stack every public ingress shares.

`create_api()` returns a FastAPI app with, in this order around every request:
correlation id (from `X-Request-ID` or generated, echoed back, bound to every log line),
edge metrics (latency histogram and request count by route template and status class),
an access-log line, the audit record of audited endpoints, and the JSON error format.
`require_principal` is the bearer-token dependency that protected routes declare: it
verifies the token, then checks the caller's roles against the endpoint's permission in
`stratmaster.security.rbac` (an endpoint the table does not name is refused to everyone).
Nothing here knows which service it serves, so the gateway and the five services behave
identically at the edge.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stratmaster.identity import AuthenticationError, Principal, TokenVerifier, parse_bearer
from stratmaster.logs import correlation_scope, current_correlation_id
from stratmaster.security.audit import entry_now, outcome_of
from stratmaster.security.limits import retry_after_header
from stratmaster.security.rbac import ENDPOINTS, Rule, permissions_of, roles_granting, rule_for
from stratmaster.telemetry import NULL, Counter, Histogram, status_class

log = logging.getLogger("stratmaster.http")

REQUEST_ID_HEADER = "x-request-id"


class APIError(Exception):
    """An error with a status and a stable machine-readable code, rendered as JSON."""

    def __init__(self, status: int, code: str, message: str, details: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details
        self.headers = headers


def error_body(status: int, code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status, "code": code, "message": message,
                            "correlation_id": current_correlation_id()}
    if details is not None:
        body["details"] = details
    return {"error": body}


def _error_response(status: int, code: str, message: str, details: Any = None,
                    headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, code, message, details), status_code=status, headers=headers)


_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
          415: "unsupported_media_type", 422: "invalid_request", 429: "too_many_requests",
          503: "unavailable", 504: "timeout"}


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return _error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    return _error_response(exc.status_code, _CODES.get(exc.status_code, "error"), message,
                           headers=getattr(exc, "headers", None))


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [{"location": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]
    summary = "; ".join(f"{p['location']}: {p['problem']}" for p in problems[:5])
    return _error_response(422, "invalid_request", f"invalid request: {summary}", problems)


async def _on_authentication_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthenticationError)
    return _error_response(401, "unauthenticated", exc.reason,
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


@dataclass(frozen=True)
class EdgeMetrics:
    """Instruments the edge records into; a replica puts real ones on `app.state`."""

    requests: Counter = NULL
    duration: Histogram = NULL


NO_METRICS = EdgeMetrics()
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024  # a replica sets MAX_REQUEST_BYTES on app.state


class _BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than {limit} bytes")
        self.limit = limit


def _limited(receive: Receive, limit: int) -> Receive:
    """`receive` that stops a body (chunked, or lying about its length) once it passes `limit`."""
    seen = 0

    async def receive_limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _BodyTooLarge(limit)
        return message

    return receive_limited


class EdgeMiddleware:
    """Correlation id, metrics and access log for every HTTP request (pure ASGI)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(REQUEST_ID_HEADER.encode())
        state = scope.setdefault("state", {})  # what require_principal leaves for the audit record
        limit = getattr(scope["app"].state, "max_request_bytes", DEFAULT_MAX_REQUEST_BYTES)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        started = time.perf_counter()
        status = 500
        started_response = False
        with correlation_scope(incoming.decode("latin-1") if incoming else None) as cid:
            # Behind Serve's proxy the header is echoed by the proxy itself.
            echo = not getattr(scope["app"].state, "proxy_echoes_request_id", False)

            async def send_with_id(message: Message) -> None:
                nonlocal status, started_response
                if message["type"] == "http.response.start":
                    started_response = True
                    status = message["status"]
                if message["type"] == "http.response.start" and echo:
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER.encode()]
                    headers.append((REQUEST_ID_HEADER.encode(), cid.encode()))
                    message = {**message, "headers": headers}
                await send(message)

            try:
                if declared.isdigit() and int(declared) > limit:
                    raise _BodyTooLarge(limit)
                await self.app(scope, _limited(receive, limit), send_with_id)
            except _BodyTooLarge as exc:
                if started_response:
                    raise
                await _error_response(413, "payload_too_large", f"request body is larger than the {exc.limit} bytes "
                                      "this platform accepts (MAX_REQUEST_BYTES)")(scope, receive, send_with_id)
            except Exception:
                # The traceback goes to the log under this correlation id; the client
                # gets the id, never the internals.
                log.exception("unhandled error", extra={"path": scope["path"]})
                if started_response:
                    raise
                await _error_response(500, "internal_error", "internal error; quote the correlation id "
                                      "when reporting it")(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                route = scope.get("route")
                path = getattr(route, "path", None)
                template = scope.get("root_path", "") + path if path is not None else "unmatched"
                tags = {"service": self.service, "route": template, "method": scope["method"],
                        "status_class": status_class(status)}
                metrics: EdgeMetrics = getattr(scope["app"].state, "edge_metrics", NO_METRICS)
                metrics.requests.inc(1.0, tags)
                metrics.duration.observe(elapsed, tags)
                log.info("request", extra={"method": scope["method"], "path": scope["path"], "route": template,
                                           "status": status, "duration_ms": round(elapsed * 1000, 2)})
                rule, principal = state.get("rule"), state.get("principal")
                if isinstance(rule, Rule) and rule.audited and isinstance(principal, Principal):
                    await _audit(scope, principal, template, status, cid)


async def _audit(scope: Scope, principal: Principal, template: str, status: int, correlation_id: str) -> None:
    """Append the audit record; a database that refuses it is logged loudly, with the record."""
    audit = getattr(scope["app"].state, "audit", None)
    if audit is None:
        return
    entry = entry_now(tenant=principal.tenant, subject=principal.subject, roles=principal.roles,
                      action=f"{scope['method']} {template}", resource=scope["path"],
                      correlation_id=correlation_id, outcome=outcome_of(status), status=status)
    try:
        await asyncio.to_thread(audit().append, entry)
    except Exception:  # noqa: BLE001 - the response is sent; the record must at least reach the log
        log.exception("audit record not stored", extra={"audit": entry.as_dict()})


def create_api(service: str, *, title: str, description: str, version: str,
               permissions: Mapping[tuple[str, str, str], Rule] | None = None, **fastapi_kwargs: Any) -> FastAPI:
    """A FastAPI app with the shared stack installed; routes are the caller's.

    `permissions` replaces the platform's endpoint table (tests of the stack itself)."""
    api = FastAPI(title=title, description=description, version=version, **fastapi_kwargs)
    api.state.permissions = ENDPOINTS if permissions is None else permissions
    api.add_exception_handler(APIError, _on_api_error)
    api.add_exception_handler(StarletteHTTPException, _on_http_exception)
    api.add_exception_handler(RequestValidationError, _on_validation_error)
    api.add_exception_handler(AuthenticationError, _on_authentication_error)
    api.add_middleware(EdgeMiddleware, service=service)
    api.state.service = service
    return api


# Declared so OpenAPI marks every protected operation as needing a bearer token; the
# header itself is parsed below, to tell "missing" from "malformed" in the 401.
_bearer_scheme = HTTPBearer(auto_error=False, bearerFormat="JWT")


def require_principal(request: Request, _: object = Depends(_bearer_scheme)) -> Principal:
    """FastAPI dependency: the verified caller, or 401 (raised as AuthenticationError)."""
    verifier: TokenVerifier | None = getattr(request.app.state, "verifier", None)
    if verifier is None:
        raise APIError(503, "unavailable", "token verification is not ready")
    token = parse_bearer(request.headers.get("authorization"))
    principal = verifier.verify(token)
    request.state.principal = principal
    authorize(request, principal)
    limiter = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        wait = limiter.acquire(principal.tenant)
        if wait > 0:
            raise APIError(429, "too_many_requests",
                           f"tenant {principal.tenant!r} is over its rate limit; retry in {wait:.1f} s",
                           {"retry_after_s": round(wait, 3)}, headers={"Retry-After": retry_after_header(wait)})
    return principal


def authorize(request: Request, principal: Principal) -> Rule:
    """The endpoint's rule, when the caller's roles grant its permission; else a 403 naming what is missing."""
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    shown = f"{request.method} {request.scope.get('root_path', '')}{path}"
    rule = rule_for(request.app.state.service, request.method, path, request.app.state.permissions)
    if rule is None:
        raise APIError(403, "forbidden", f"{shown} has no permission assigned, so no role may call it")
    request.state.rule = rule
    if rule.permission not in permissions_of(principal.roles):
        held = ", ".join(principal.roles) or "none"
        raise APIError(403, "forbidden",
                       f"{shown} needs the {rule.permission} permission; your roles ({held}) do not grant it",
                       {"permission": str(rule.permission), "roles": list(principal.roles),
                        "granted_by": roles_granting(rule.permission)})
    return rule

