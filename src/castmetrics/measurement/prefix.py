"""The measurement prefix: ``/p/{tenant_slug}/{audio URL without scheme}`` answers 302 at once.

This is the hottest path of the product (every play of every episode crosses it), so it is a bare
ASGI layer in front of the whole application: no routing, no middleware, no database. It appends the
raw request to the process's in-memory buffer; the recorder (``measurement.recorder``) resolves
tenant and episode, classifies the user agent and writes batches within a second.

It is not an open redirect: a slug that is no tenant's answers 404, a host part with ``@``, ``\\`` or
``%`` (userinfo, or what some clients read as a path) answers 400, and a browser navigation (``Accept:
text/html`` without a Range: a link someone clicked, not a player) goes only to a host the tenant's episodes
use. Both lists come from the tenant directory in memory (``measurement.tenant_directory``).
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

from starlette.types import Scope, Send

from castmetrics.measurement.tenant_directory import TenantDirectory
from castmetrics.observability import PREFIX_REFUSED

PREFIX = b"/p/"
_UNSAFE = re.compile(rb"[\x00-\x20\x7f]")  # nothing that could split or bend the Location header
MAX_URL_BYTES = 4096
MAX_HEADER_CHARS = 1024
# In the host part: userinfo (``good.example@evil.example``), a backslash (a path separator to browsers:
# ``evil.example\@good.example``) or percent-encoding (either, once decoded).
_BAD_HOST = re.compile(rb"[@\\%]")
_BAD_REQUEST = b'{"type":"about:blank","title":"Bad Request","status":400,"detail":"use /p/{tenant_slug}/{audio URL without scheme}"}'  # noqa: E501
_UNKNOWN_TENANT = b'{"type":"about:blank","title":"Not Found","status":404,"detail":"no podcast network has this slug"}'
_FOREIGN_HOST = b'{"type":"about:blank","title":"Not Found","status":404,"detail":"this network\'s episodes are not served from that host"}'  # noqa: E501
_PROBLEM = [(b"content-type", b"application/problem+json")]
_MALFORMED = PREFIX_REFUSED.labels("malformed")
_UNKNOWN = PREFIX_REFUSED.labels("unknown_tenant")
_FOREIGN = PREFIX_REFUSED.labels("foreign_host")


class RawRequest(NamedTuple):
    """One prefix request as it arrived; the client address lives only in memory."""

    at: float  # unix time
    slug: str
    url: str  # host/path?query, without scheme
    address: str
    user_agent: str
    referer: str
    range: str
    method: str


class Buffer:
    """Requests waiting for the recorder. The prefix appends on the serving thread; the recorder
    takes them on its own thread (deque appends and pops are atomic)."""

    def __init__(self) -> None:
        self.items: deque[RawRequest] = deque()
        self.append = self.items.append

    def take(self) -> list[RawRequest]:
        pop = self.items.popleft
        return [pop() for _ in range(len(self.items))]

    def __len__(self) -> int:
        return len(self.items)


def _hop_address(hop: str) -> str | None:
    """The address of one X-Forwarded-For hop (``1.2.3.4``, ``1.2.3.4:5678``, ``[2001:db8::1]:443``,
    ``2001:db8::1``), or None when it is not an address (``unknown``, an obfuscated name)."""
    hop = hop.strip()
    if hop.startswith("["):
        hop = hop[1 : hop.find("]")] if "]" in hop else hop
    elif hop.count(":") == 1:
        hop = hop.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(hop))
    except ValueError:
        return None


def trusted_networks(cidrs: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs if cidr.strip())


class Edge:
    """What every HTTP request meets first, before any routing or middleware: the client address
    taken from ``X-Forwarded-For`` when the direct peer is a configured trusted proxy (for every route),
    and the measurement prefix, answered right here. Without a ``directory`` (or before it is loaded)
    every slug and host is redirected."""

    def __init__(
        self,
        buffer: Buffer,
        trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (),
        directory: TenantDirectory | None = None,
    ) -> None:
        self.buffer = buffer
        self.trusted_proxies = trusted_proxies
        self.directory = directory
        self._trusted_cache: dict[str, bool] = {}

    def _is_trusted(self, peer: str) -> bool:
        known = self._trusted_cache.get(peer)
        if known is None:
            try:
                address = ipaddress.ip_address(peer)
                known = any(address in network for network in self.trusted_proxies)
            except ValueError:
                known = False
            if len(self._trusted_cache) < 10_000:
                self._trusted_cache[peer] = known
        return known

    def resolve_client(self, scope: Scope) -> None:
        """Replace ``scope["client"]`` by the nearest address in X-Forwarded-For that is not one of
        our proxies, when the direct peer is one of them; otherwise leave the peer. Such a proxy's
        ``X-Forwarded-Proto: https`` also makes the request's scheme https (so cookies are Secure)."""
        client = scope.get("client")
        if not client or not self._is_trusted(client[0]):
            return
        forwarded = b""
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                forwarded = value if not forwarded else forwarded + b"," + value
            elif name == b"x-forwarded-proto" and value.strip().lower() == b"https":
                scope["scheme"] = "https"
        if not forwarded:
            return
        address = client[0]
        for hop in reversed(forwarded.decode("latin-1").split(",")):
            parsed = _hop_address(hop)
            if parsed is None:
                break  # an unreadable hop: keep the last address we could read
            address = parsed
            if not self._is_trusted(address):
                break
        scope["client"] = (address, 0)

    def is_prefix(self, scope: Scope) -> bool:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        return raw_path.startswith(PREFIX)

    async def redirect(self, scope: Scope, send: Send) -> None:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        slug, _, rest = raw_path[3:].partition(b"/")
        query: bytes = scope.get("query_string", b"")
        target = rest + b"?" + query if query else rest
        if (
            not slug
            or not rest
            or rest[0] == 47  # 47 = "/"
            or _UNSAFE.search(target)
            or _BAD_HOST.search(rest.partition(b"/")[0])
        ):
            _MALFORMED.inc()
            await _answer(send, 400, _PROBLEM, _BAD_REQUEST)
            return
        user_agent = referer = range_ = ""
        page = False
        for name, value in scope["headers"]:
            if name == b"user-agent":
                user_agent = value.decode("latin-1")[:MAX_HEADER_CHARS]
            elif name == b"referer":
                referer = value.decode("latin-1")[:MAX_HEADER_CHARS]
            elif name == b"range":
                range_ = value.decode("latin-1")[:200]
            elif name == b"accept":
                page = page or b"text/html" in value.lower()
        slug_text = slug.decode("latin-1")[:100]
        url = target[:MAX_URL_BYTES].decode("latin-1")
        directory = self.directory
        if directory is not None and directory.slugs is not None:
            tenant = directory.slugs.get(slug_text)
            if tenant is None:
                _UNKNOWN.inc()
                await _answer(send, 404, _PROBLEM, _UNKNOWN_TENANT)
                return
            if page and not range_ and not directory.serves(tenant, url):
                _FOREIGN.inc()
                await _answer(send, 404, _PROBLEM, _FOREIGN_HOST)
                return
        await _answer(
            send,
            302,
            [(b"location", b"https://" + target), (b"cache-control", b"private, no-cache"), (b"content-length", b"0")],
            b"",
        )
        client = scope.get("client")
        self.buffer.append(
            RawRequest(
                time.time(),
                slug_text,
                url,
                client[0] if client else "",
                user_agent,
                referer,
                range_,
                scope["method"],
            )
        )


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    if body:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
