"""Fetching sources against local HTTP servers: allowlist, robots.txt, size, time, redirects, types."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stratmaster.research.sources import (
    USER_AGENT,
    SourceFetcher,
    SourceLimits,
    SourceRefused,
    host_allowed,
    normalise_allowlist,
)

PAGE = b"<html><head><title>Premium pricing memo</title></head><body><p>Urban customers stayed.</p></body></html>"


def make_server(robots: tuple[int, bytes]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def reply(self, status: int, body: bytes, content_type: str = "text/html; charset=utf-8",
                  headers: dict[str, str] | None = None, length: bool = True) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.server.agents.append(self.headers.get("User-Agent"))  # type: ignore[attr-defined]
            if self.path == "/robots.txt":
                return self.reply(robots[0], robots[1], "text/plain")
            if self.path == "/memo":
                return self.reply(200, PAGE)
            if self.path == "/private/memo":
                return self.reply(200, PAGE)
            if self.path == "/big":
                return self.reply(200, b"x" * 5000, "text/plain")
            if self.path == "/big-unannounced":
                self.close_connection = True
                return self.reply(200, b"y" * 5000, "text/plain", length=False)
            if self.path == "/slow":
                time.sleep(1.5)
                return self.reply(200, b"late", "text/plain")
            if self.path == "/image":
                return self.reply(200, b"\x89PNG", "image/png")
            if self.path == "/moved":
                return self.reply(302, b"", headers={"Location": "/memo"})
            if self.path == "/away":
                return self.reply(302, b"", headers={"Location": "http://elsewhere.example/page"})
            if self.path.startswith("/loop"):
                return self.reply(302, b"", headers={"Location": f"/loop{len(self.path)}"})
            return self.reply(404, b"missing", "text/plain")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.agents = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def site() -> Iterator[str]:
    server = make_server((200, f"User-agent: {USER_AGENT.split('/')[0]}\nDisallow: /private\n".encode()))
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def fetcher() -> Iterator[SourceFetcher]:
    fetcher = SourceFetcher(SourceLimits(max_bytes=2000, timeout_s=1.0, max_redirects=2))
    yield fetcher
    fetcher.close()


ALLOW = ["127.0.0.1"]


def refusal(fetcher: SourceFetcher, url: str, allowlist: list[str] = ALLOW) -> str:
    with pytest.raises(SourceRefused) as refused:
        fetcher.fetch(url, allowlist)
    return refused.value.code


def test_an_allowed_page_comes_with_its_provenance(fetcher, site):
    source = fetcher.fetch(f"{site}/memo", ALLOW)
    assert source.content_type == "html" and "Urban customers stayed." in source.body
    provenance = source.provenance
    assert provenance["title"] == "Premium pricing memo" and provenance["http_status"] == 200
    assert provenance["bytes"] == len(PAGE) and len(provenance["sha256"]) == 64
    assert provenance["robots"] == "allowed by robots.txt"
    document = source.document()
    assert document["id"].startswith("web:") and document["source"] == f"{site}/memo"
    assert document["html"] == source.body and document["metadata"]["fetched_at"]


def test_the_allowlist_robots_and_the_site_decide(fetcher, site):
    assert refusal(fetcher, f"{site}/memo", ["example.org"]) == "not_allowed"
    assert refusal(fetcher, f"{site}/private/memo") == "robots"
    assert refusal(fetcher, "ftp://127.0.0.1/memo") == "bad_url"
    assert refusal(fetcher, f"{site}/nothing-here") == "http_status"
    assert refusal(fetcher, f"{site}/image") == "content_type"


def test_size_and_time_limits_hold_whether_or_not_the_size_is_announced(fetcher, site):
    assert refusal(fetcher, f"{site}/big") == "too_large"
    assert refusal(fetcher, f"{site}/big-unannounced") == "too_large"
    assert refusal(fetcher, f"{site}/slow") == "timeout"
    assert fetcher.fetch(f"{site}/memo", ALLOW, max_bytes=10_000).provenance["bytes"] == len(PAGE), \
        "a request cannot raise the server's limit, only lower it"
    with pytest.raises(SourceRefused, match="limit is 50"):
        fetcher.fetch(f"{site}/memo", ALLOW, max_bytes=50)


def test_every_redirect_target_is_checked_like_the_first_url(fetcher, site):
    moved = fetcher.fetch(f"{site}/moved", ALLOW)
    assert moved.final_url == f"{site}/memo" and moved.provenance["redirects"] == 1
    assert refusal(fetcher, f"{site}/away") == "not_allowed"
    assert refusal(fetcher, f"{site}/loop") == "redirects"


def test_robots_missing_allows_and_robots_failing_refuses(fetcher):
    missing, broken = make_server((404, b"")), make_server((503, b"down"))
    try:
        assert fetcher.fetch(f"http://127.0.0.1:{missing.server_address[1]}/memo", ALLOW).provenance["robots"] \
            .startswith("no robots.txt")
        assert refusal(fetcher, f"http://127.0.0.1:{broken.server_address[1]}/memo") == "robots"
        assert set(missing.agents) == {USER_AGENT}, "we say who we are"
    finally:
        missing.shutdown()
        broken.shutdown()


def test_an_allowlisted_name_pointing_inside_is_refused():
    inside = SourceFetcher(resolver=lambda host: ["10.0.0.5"])
    outside = SourceFetcher(resolver=lambda host: ["93.184.215.14"])
    with pytest.raises(SourceRefused) as refused:
        inside.check_url("https://intranet.example.org/x", ["example.org"])
    assert refused.value.code == "private_address"
    assert outside.check_url("https://news.example.org/x", ["example.org"]) == "news.example.org"


def test_allowlist_entries_are_hosts_or_addresses():
    assert normalise_allowlist(["Example.ORG.", "*.news.example.com", "127.0.0.1", "::1"]) == [
        "127.0.0.1", "::1", "example.org", "news.example.com"]
    with pytest.raises(ValueError, match="not a host"):
        normalise_allowlist(["https://example.org/path"])
    assert host_allowed("a.b.example.org", ["example.org"]) and not host_allowed("badexample.org", ["example.org"])
