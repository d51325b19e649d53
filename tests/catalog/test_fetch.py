"""Fetching feeds against a real local HTTP(S) server: conditional GET, redirects, SSRF refusals, limits.

No network leaves this machine: every host name goes through an injected resolver that answers with
loopback addresses, and the refused hops are refused before any connection is opened (the server's
request log proves it).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme

from castmetrics.catalog.fetch import FeedFetchError, fetch_feed, is_public_address, resolve_host
from castmetrics.errors import Invalid

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>Local</title></channel></rss>'
ETAG = '"v1"'
LAST_MODIFIED = "Wed, 15 Jun 2022 19:00:00 GMT"


class FeedServerHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FeedServer

    def log_message(self, format: str, *args: Any) -> None:  # the base class's name
        pass

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Host", "")))
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        route = parts.path.strip("/").split("/")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            self._route(route, query)

    def _route(self, route: list[str], query: dict[str, str]) -> None:
        match route:
            case ["feed"]:
                if self.headers.get("If-None-Match") == ETAG or self.headers.get("If-Modified-Since") == LAST_MODIFIED:
                    self._send(304, b"", {"ETag": ETAG})
                else:
                    self._send(
                        200,
                        FEED,
                        {"ETag": ETAG, "Last-Modified": LAST_MODIFIED, "Content-Type": "application/rss+xml"},
                    )
            case ["chain", count]:  # /chain/N redirects N times, relatively, then serves the feed
                if int(count) == 0:
                    self._send(200, FEED)
                else:
                    self._send(302, b"", {"Location": str(int(count) - 1)})
            case ["redirect"]:
                self._send(int(query.get("status", "302")), b"", {"Location": query["to"]})
            case ["no-location"]:
                self._send(302, b"")
            case ["echo-host"]:
                self._send(200, self.headers.get("Host", "").encode())
            case ["sized", size]:
                self._send(200, b"x" * int(size))
            case ["unsized", size]:  # no Content-Length: the body ends when the connection closes
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(b"x" * int(size))
                self.close_connection = True
            case ["slow"]:
                time.sleep(float(query.get("seconds", "3")))
                self._send(200, FEED)
            case ["drip"]:  # one byte every 0.1 s: never a read timeout, only the overall deadline
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                for _ in range(60):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
                self.close_connection = True
            case _:
                self._send(404, b"not here")

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FeedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, FeedServerHandler)
        self.requests: list[tuple[str, str]] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def _serve(server: FeedServer) -> Iterator[FeedServer]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[FeedServer]:
    yield from _serve(FeedServer(("127.0.0.1", 0)))


@dataclass
class TableResolver:
    """Stands in for DNS: names map to (loopback) addresses; anything else does not resolve."""

    table: dict[str, list[str]]
    calls: list[str] = field(default_factory=list)

    async def __call__(self, host: str) -> list[str]:
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.table[host])


def only_loopback_one_is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A policy for the tests that need a "public" first hop: 127.0.0.1 plays the internet (this
    machine has no other), every other address is judged by the real rule."""
    return address == ipaddress.IPv4Address("127.0.0.1") or is_public_address(address)


async def fetch(url: str, **options: Any) -> Any:
    options.setdefault("etag", None)
    options.setdefault("last_modified", None)
    options.setdefault("allow_private", True)
    return await fetch_feed(url, **options)


# --- conditional GET ------------------------------------------------------------------------------


async def test_200_with_validators_then_304_on_conditional_get(server: FeedServer) -> None:
    url = f"http://127.0.0.1:{server.port}/feed"

    first = await fetch(url)
    again = await fetch(url, etag=first.etag, last_modified=first.last_modified)
    by_date = await fetch(url, last_modified=first.last_modified)

    assert (first.status, first.not_modified, first.body) == (200, False, FEED)
    assert (first.etag, first.last_modified, first.content_type) == (ETAG, LAST_MODIFIED, "application/rss+xml")
    assert (first.final_url, first.redirects) == (url, [])
    assert (again.status, again.not_modified, again.body) == (304, True, None)
    assert (again.etag, again.last_modified) == (ETAG, LAST_MODIFIED)  # kept for the next conditional GET
    assert (by_date.status, by_date.not_modified) == (304, True)


# --- redirects ------------------------------------------------------------------------------------


async def test_five_redirects_are_followed(server: FeedServer) -> None:
    result = await fetch(f"http://127.0.0.1:{server.port}/chain/5")

    base = f"http://127.0.0.1:{server.port}/chain"
    assert result.body == FEED
    assert result.redirects == [f"{base}/4", f"{base}/3", f"{base}/2", f"{base}/1", f"{base}/0"]
    assert result.final_url == f"{base}/0"


async def test_six_redirects_are_too_many(server: FeedServer) -> None:
    with pytest.raises(FeedFetchError, match="too many redirects"):
        await fetch(f"http://127.0.0.1:{server.port}/chain/6")


async def test_max_redirects_is_configurable(server: FeedServer) -> None:
    with pytest.raises(FeedFetchError, match="too many redirects"):
        await fetch(f"http://127.0.0.1:{server.port}/chain/2", max_redirects=1)


@pytest.mark.parametrize("status", [301, 303, 307, 308])
async def test_every_redirect_status_is_followed(server: FeedServer, status: int) -> None:
    to = f"http://127.0.0.1:{server.port}/feed"

    result = await fetch(f"http://127.0.0.1:{server.port}/redirect?status={status}&to={to}")

    assert (result.final_url, result.body) == (to, FEED)


async def test_redirect_without_location_is_an_error(server: FeedServer) -> None:
    with pytest.raises(FeedFetchError, match="HTTP 302 redirect without a Location") as caught:
        await fetch(f"http://127.0.0.1:{server.port}/no-location")
    assert caught.value.status == 302


# --- SSRF: every hop is checked, and the connection goes to the checked address -------------------


async def test_private_ip_literal_is_refused_before_connecting(server: FeedServer) -> None:
    before = len(server.requests)

    with pytest.raises(FeedFetchError, match=r"^refused: 127\.0\.0\.1 is a private address$"):
        await fetch(f"http://127.0.0.1:{server.port}/feed", allow_private=False)

    assert len(server.requests) == before


async def test_first_url_resolving_to_loopback_is_refused(server: FeedServer) -> None:
    resolve = TableResolver({"feeds.example.com": ["127.0.0.1"]})
    before = len(server.requests)

    with pytest.raises(FeedFetchError, match=r"^refused: feeds\.example\.com resolves to a private address$"):
        await fetch(f"http://feeds.example.com:{server.port}/feed", allow_private=False, resolve=resolve)

    assert len(server.requests) == before


async def test_localhost_through_the_real_resolver_is_refused(server: FeedServer) -> None:
    with pytest.raises(FeedFetchError, match="refused: localhost resolves to a private address"):
        await fetch(f"http://localhost:{server.port}/feed", allow_private=False)


async def test_one_private_address_among_several_refuses(server: FeedServer) -> None:
    resolve = TableResolver({"feeds.example.com": ["127.0.0.1", "10.0.0.7"]})

    with pytest.raises(FeedFetchError, match="refused: feeds.example.com resolves to a private address"):
        await fetch(
            f"http://feeds.example.com:{server.port}/feed",
            allow_private=False,
            resolve=resolve,
            address_allowed=only_loopback_one_is_public,
        )


async def test_a_public_first_hop_is_fetched(server: FeedServer) -> None:
    resolve = TableResolver({"feeds.example.com": ["127.0.0.1"]})

    result = await fetch(
        f"http://feeds.example.com:{server.port}/feed",
        allow_private=False,
        resolve=resolve,
        address_allowed=only_loopback_one_is_public,
    )

    assert result.body == FEED


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("http://internal.example.com:{port}/feed", "refused: internal.example.com resolves to a private address"),
        ("http://127.0.0.2:{port}/feed", "refused: 127.0.0.2 is a private address"),
        ("http://[::ffff:127.0.0.2]:{port}/feed", "refused: ::ffff:127.0.0.2 is a private address"),
        ("http://[::1]:{port}/feed", "refused: ::1 is a private address"),
    ],
    ids=["name-resolving-to-private", "ipv4-literal", "ipv4-mapped-ipv6", "ipv6-loopback"],
)
async def test_public_first_hop_redirecting_to_a_private_hop_is_refused(
    server: FeedServer, target: str, message: str
) -> None:
    resolve = TableResolver({"feeds.example.com": ["127.0.0.1"], "internal.example.com": ["127.0.0.2"]})
    before = len(server.requests)

    with pytest.raises(FeedFetchError) as caught:
        await fetch(
            f"http://feeds.example.com:{server.port}/redirect?to={target.format(port=server.port)}",
            allow_private=False,
            resolve=resolve,
            address_allowed=only_loopback_one_is_public,
        )

    assert caught.value.detail == message
    assert len(server.requests) == before + 1  # the redirect was fetched; the private hop never was


async def test_the_connection_goes_to_the_checked_address_with_the_original_host_header(server: FeedServer) -> None:
    # feeds.example.com resolves nowhere on this machine except through the injected resolver: the
    # fetch can only succeed by connecting to the address that was checked, resolved once.
    resolve = TableResolver({"feeds.example.com": ["127.0.0.1"]})

    result = await fetch(f"http://feeds.example.com:{server.port}/echo-host", resolve=resolve)

    assert result.body == f"feeds.example.com:{server.port}".encode()
    assert resolve.calls == ["feeds.example.com"]


async def test_unresolvable_host_is_an_error() -> None:
    with pytest.raises(FeedFetchError, match="could not resolve nowhere.example.com"):
        await fetch("http://nowhere.example.com/feed", resolve=TableResolver({}))


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("127.0.0.1", False),
        ("127.255.255.254", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("192.0.2.1", False),  # documentation
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("2001:db8::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


async def test_resolve_host_uses_the_system_resolver() -> None:
    addresses = await resolve_host("localhost")

    assert addresses
    assert all(ipaddress.ip_address(address).is_loopback for address in addresses)


# --- schemes, status codes, limits ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://feeds.example.com/feed.xml", "gopher://feeds.example.com/", "/relative"]
)
async def test_unsupported_scheme_is_refused(url: str) -> None:
    resolve = TableResolver({})

    with pytest.raises(FeedFetchError, match="unsupported URL scheme"):
        await fetch(url, resolve=resolve)

    assert resolve.calls == []


async def test_redirect_to_an_unsupported_scheme_is_refused(server: FeedServer) -> None:
    with pytest.raises(FeedFetchError, match="unsupported URL scheme 'file'"):
        await fetch(f"http://127.0.0.1:{server.port}/redirect?to=file:///etc/passwd")


async def test_404_names_the_url_and_carries_the_status(server: FeedServer) -> None:
    url = f"http://127.0.0.1:{server.port}/missing"

    with pytest.raises(FeedFetchError) as caught:
        await fetch(url)

    assert caught.value.detail == f"HTTP 404 from {url}"
    assert caught.value.status == 404
    assert caught.value.extra == {"upstream_status": 404}
    assert isinstance(caught.value, Invalid)


async def test_messages_never_show_a_password_from_the_url(server: FeedServer) -> None:
    with pytest.raises(FeedFetchError) as caught:
        await fetch(f"http://listener:s3cret@127.0.0.1:{server.port}/missing")

    assert caught.value.detail == f"HTTP 404 from http://127.0.0.1:{server.port}/missing"


async def test_invalid_redirect_location_is_an_error(server: FeedServer) -> None:
    with pytest.raises(FeedFetchError, match="Invalid URL in location header"):
        await fetch(f"http://127.0.0.1:{server.port}/redirect?to=http://[::1/feed")


async def test_invalid_url_is_an_error() -> None:
    with pytest.raises(FeedFetchError, match="invalid URL"):
        await fetch("http://[::1/feed")


async def test_declared_length_over_the_cap_is_refused_early(server: FeedServer) -> None:
    with pytest.raises(FeedFetchError, match=r"^feed larger than 1000 bytes \(Content-Length 1001\)$"):
        await fetch(f"http://127.0.0.1:{server.port}/sized/1001", max_bytes=1000)


async def test_streamed_body_over_the_cap_is_stopped(server: FeedServer) -> None:
    with pytest.raises(FeedFetchError, match=r"^feed larger than 1000 bytes$"):
        await fetch(f"http://127.0.0.1:{server.port}/unsized/50000", max_bytes=1000)


async def test_body_at_the_cap_is_fine(server: FeedServer) -> None:
    sized = await fetch(f"http://127.0.0.1:{server.port}/sized/1000", max_bytes=1000)
    unsized = await fetch(f"http://127.0.0.1:{server.port}/unsized/1000", max_bytes=1000)

    assert sized.body == unsized.body == b"x" * 1000


async def test_slow_server_times_out(server: FeedServer) -> None:
    started = time.monotonic()

    with pytest.raises(FeedFetchError, match="timed out"):
        await fetch(f"http://127.0.0.1:{server.port}/slow?seconds=3", timeout=0.5)

    assert time.monotonic() - started < 2


async def test_dripping_server_hits_the_overall_deadline(server: FeedServer) -> None:
    started = time.monotonic()

    with pytest.raises(FeedFetchError, match=r"timed out after 1 s fetching"):
        await fetch(f"http://127.0.0.1:{server.port}/drip", timeout=1.0)

    assert time.monotonic() - started < 3


async def test_connection_refused_is_an_error() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: connections are refused

        with pytest.raises(FeedFetchError, match="could not connect to 127.0.0.1"):
            await fetch(f"http://127.0.0.1:{port}/feed")


# --- TLS with a pinned address: SNI and certificate checks still use the host name ----------------


@dataclass
class TLSServer:
    server: FeedServer
    client_context: ssl.SSLContext
    server_names: list[str | None]


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TLSServer]:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("feeds.example.com").configure_cert(server_context)
    server_names: list[str | None] = []
    server_context.sni_callback = lambda _sock, name, _ctx: server_names.append(name)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)

    server = FeedServer(("127.0.0.1", 0))
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    for running in _serve(server):
        yield TLSServer(running, client_context, server_names)


async def test_https_through_the_pinned_address_verifies_the_host_name(tls_server: TLSServer) -> None:
    resolve = TableResolver({"feeds.example.com": ["127.0.0.1"]})

    result = await fetch(
        f"https://feeds.example.com:{tls_server.server.port}/feed",
        resolve=resolve,
        ssl_context=tls_server.client_context,
    )

    assert result.body == FEED
    assert tls_server.server_names[-1] == "feeds.example.com"


async def test_https_certificate_for_another_name_is_rejected(tls_server: TLSServer) -> None:
    resolve = TableResolver({"other.example.com": ["127.0.0.1"]})

    with pytest.raises(FeedFetchError, match="could not connect to other.example.com: .*CERTIFICATE_VERIFY_FAILED"):
        await fetch(
            f"https://other.example.com:{tls_server.server.port}/feed",
            resolve=resolve,
            ssl_context=tls_server.client_context,
        )
