"""The measurement prefix: ``/p/{tenant_slug}/{audio URL without scheme}`` answers 302 at once.

This is the hottest path of the product (every play of every episode crosses it), so it is a bare
ASGI layer in front of the whole application: no routing, no middleware, no database. It appends the
raw request to the process's in-memory buffer; the recorder (``measurement.recorder``) resolves
tenant and episode, classifies the user agent and writes batches within a second.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

from starlette.types import Scope, Send

PREFIX = b"/p/"
_UNSAFE = re.compile(rb"[\x00-\x20\x7f]")  # nothing that could split or bend the Location header
MAX_URL_BYTES = 4096
MAX_HEADER_CHARS = 1024
_BAD_REQUEST = b'{"type":"about:blank","title":"Bad Request","status":400,"detail":"use /p/{tenant_slug}/{audio URL without scheme}"}'  # noqa: E501


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
    and the measurement prefix, answered right here."""

    def __init__(
        self, buffer: Buffer, trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    ) -> None:
        self.buffer = buffer
        self.trusted_proxies = trusted_proxies
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
        if not slug or not rest or rest[0] == 47 or _UNSAFE.search(target):  # 47 = "/"
            await _answer(send, 400, [(b"content-type", b"application/problem+json")], _BAD_REQUEST)
            return
        await _answer(
            send,
            302,
            [(b"location", b"https://" + target), (b"cache-control", b"private, no-cache"), (b"content-length", b"0")],
            b"",
        )
        user_agent = referer = range_ = ""
        for name, value in scope["headers"]:
            if name == b"user-agent":
                user_agent = value.decode("latin-1")[:MAX_HEADER_CHARS]
            elif name == b"referer":
                referer = value.decode("latin-1")[:MAX_HEADER_CHARS]
            elif name == b"range":
                range_ = value.decode("latin-1")[:200]
        client = scope.get("client")
        self.buffer.append(
            RawRequest(
                time.time(),
                slug.decode("latin-1")[:100],
                target[:MAX_URL_BYTES].decode("latin-1"),
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
