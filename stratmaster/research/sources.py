"""Fetching web pages a tenant allows, politely and within limits, with their provenance.

A URL is fetched only when all of these hold, each refusal naming its reason:

- the scheme is http or https and the host is on the tenant's allowlist (`example.org`
  allows it and its subdomains; an IP literal allows exactly that address);
- a host name resolves to public addresses only: a name that points at a loopback, private,
  link-local or reserved address is refused, so an allowlisted name cannot be used to reach
  the cluster's insides (an IP literal on the allowlist is the explicit way to allow one);
- the site's robots.txt allows our user agent for the path (RFC 9309: a missing robots.txt
  allows everything, one that cannot be read - 5xx, timeout - allows nothing);
- the answer arrives within `timeout_s` in all, is at most `max_bytes`, is text/html,
  text/plain or text/markdown, and comes after at most `max_redirects` redirects, each
  target checked like the first URL.

What was fetched keeps its provenance: the URL asked for, the final URL, when, the HTTP
status, content type, size and SHA-256, and the robots.txt decision.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import httpx

USER_AGENT = "StratMasterResearch/1.0 (+https://stratmaster.example/bot)"
CONTENT_TYPES = {"text/html": "html", "text/plain": "text", "text/markdown": "markdown"}


@dataclass(frozen=True)
class SourceLimits:
    max_bytes: int = 2_000_000
    timeout_s: float = 10.0
    max_redirects: int = 3


class SourceRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class FetchedSource:
    url: str
    final_url: str
    content_type: str  # html | text | markdown
    body: str
    provenance: dict[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        """The knowledge service's document for it: id from the final URL, provenance as metadata."""
        document_id = "web:" + hashlib.sha256(self.final_url.encode()).hexdigest()[:24]
        title = self.provenance.get("title") or self.final_url
        metadata = {k: v for k, v in self.provenance.items() if isinstance(v, str | int | float | bool)}
        return {"id": document_id, "title": title[:1000], self.content_type: self.body, "source": self.final_url[:2048],
                "metadata": metadata}


def normalise_allowlist(entries: list[str]) -> list[str]:
    """Lowercased hosts or IP literals; ValueError naming an entry that is neither."""
    found = []
    for raw in entries:
        entry = raw.strip().lower().rstrip(".")
        if entry.startswith("*."):
            entry = entry[2:]
        try:
            found.append(str(ipaddress.ip_address(entry.strip("[]"))))
            continue
        except ValueError:
            pass
        labels = entry.split(".")
        if not entry or len(entry) > 253 or not all(label and len(label) <= 63 and label.replace("-", "").isalnum()
                                                      for label in labels):
            raise ValueError(f"{raw!r} is not a host name or an IP address")
        found.append(entry)
    return sorted(set(found))


def host_allowed(host: str, allowlist: list[str]) -> bool:
    host = host.lower().rstrip(".").strip("[]")
    return any(host == entry or host.endswith("." + entry) for entry in allowlist)


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast
                or ip.is_unspecified)


Resolver = Callable[[str], list[str]]


def resolve(host: str) -> list[str]:
    return sorted({info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})


class SourceFetcher:
    def __init__(self, limits: SourceLimits = SourceLimits(), resolver: Resolver = resolve,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.limits, self._resolve = limits, resolver
        self._client = httpx.Client(headers={"User-Agent": USER_AGENT}, follow_redirects=False, transport=transport)

    def close(self) -> None:
        self._client.close()

    def check_url(self, url: str, allowlist: list[str]) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SourceRefused("bad_url", f"{url!r} is not an http(s) URL")
        host = parts.hostname
        if not host_allowed(host, allowlist):
            raise SourceRefused("not_allowed", f"{host} is not on this tenant's source allowlist")
        try:
            ipaddress.ip_address(host.strip("[]"))
            return host  # an IP literal is allowed explicitly by its allowlist entry
        except ValueError:
            pass
        try:
            addresses = self._resolve(host)
        except OSError as exc:
            raise SourceRefused("unresolvable", f"{host} does not resolve: {exc}") from None
        inner = [a for a in addresses if not _public(a)]
        if inner or not addresses:
            raise SourceRefused("private_address", f"{host} resolves to a non-public address ({', '.join(inner)}); "
                                "allowlist the IP itself to fetch from it")
        return host

    def _get(self, url: str, deadline: float, max_bytes: int) -> tuple[httpx.Response, bytes]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SourceRefused("timeout", f"no answer from {url} within {self.limits.timeout_s} s")
        try:
            with self._client.stream("GET", url, timeout=httpx.Timeout(remaining)) as response:
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise SourceRefused("too_large", f"{url} is {declared} bytes; the limit is {max_bytes}")
                body = bytearray()
                for piece in response.iter_bytes():
                    body += piece
                    if len(body) > max_bytes:
                        raise SourceRefused("too_large", f"{url} is larger than the limit of {max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise SourceRefused("timeout", f"{url} did not finish within {self.limits.timeout_s} s")
                return response, bytes(body)
        except httpx.TimeoutException:
            raise SourceRefused("timeout", f"no answer from {url} within {self.limits.timeout_s} s") from None
        except httpx.HTTPError as exc:
            raise SourceRefused("unreachable", f"{url}: {type(exc).__name__}: {exc}") from None

    def robots_allows(self, url: str, deadline: float) -> tuple[bool, str]:
        parts = urlsplit(url)
        robots_url = f"{parts.scheme}://{parts.netloc}/robots.txt"
        try:
            response, body = self._get(robots_url, deadline, 500_000)
        except SourceRefused as exc:
            return False, f"robots.txt unreadable ({exc.code}): nothing allowed"
        if 400 <= response.status_code < 500:
            return True, f"no robots.txt ({response.status_code}): everything allowed"
        if response.status_code >= 300:
            return False, f"robots.txt answered {response.status_code}: nothing allowed"
        parser = RobotFileParser()
        parser.parse(body.decode("utf-8", errors="replace").splitlines())
        allowed = parser.can_fetch(USER_AGENT, url)
        return allowed, "allowed by robots.txt" if allowed else "disallowed by robots.txt"

    def fetch(self, url: str, allowlist: list[str], *, max_bytes: int | None = None,
              timeout_s: float | None = None) -> FetchedSource:
        max_bytes = min(max_bytes or self.limits.max_bytes, self.limits.max_bytes)
        timeout = min(timeout_s or self.limits.timeout_s, self.limits.timeout_s)
        deadline = time.monotonic() + timeout
        current, hops = url, 0
        while True:
            self.check_url(current, allowlist)
            allowed, robots = self.robots_allows(current, deadline)
            if not allowed:
                raise SourceRefused("robots", f"{current}: {robots}")
            response, body = self._get(current, deadline, max_bytes)
            if response.is_redirect:
                hops += 1
                if hops > self.limits.max_redirects:
                    raise SourceRefused("redirects", f"{url} redirects more than {self.limits.max_redirects} times")
                current = urljoin(current, response.headers.get("location", ""))
                continue
            break
        if response.status_code != 200:
            raise SourceRefused("http_status", f"{current} answered {response.status_code}")
        media = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in CONTENT_TYPES:
            raise SourceRefused("content_type", f"{current} is {media or 'untyped'}; text/html, text/plain or "
                                "text/markdown only")
        text = body.decode(response.encoding or "utf-8", errors="replace")
        provenance = {"url": url, "final_url": current, "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
                      "http_status": response.status_code, "content_type": media, "bytes": len(body),
                      "sha256": hashlib.sha256(body).hexdigest(), "robots": robots, "redirects": hops,
                      "title": _title(text) if media == "text/html" else None}
        return FetchedSource(url, current, CONTENT_TYPES[media], text, provenance)


def _title(html: str) -> str | None:
    lower = html.lower()
    start = lower.find("<title")
    if start < 0:
        return None
    start = lower.find(">", start) + 1
    end = lower.find("</title>", start)
    return " ".join(html[start:end].split()) or None if start > 0 and end > start else None


def fetched_view(source: FetchedSource) -> dict[str, Any]:
    return {k: v for k, v in asdict(source).items() if k != "body"}
