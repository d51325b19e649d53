"""The measurement prefix: ``/p/{tenant_slug}/{audio URL without scheme}`` answers 302 at once.

This is the hottest path of the product (every play of every episode crosses it), so it is a bare
ASGI layer in front of the whole application: no routing, no middleware, no database. It appends the
raw request to the process's in-memory buffer; the recorder (``measurement.recorder``) resolves
tenant and episode, classifies the user agent and writes batches within a second.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

PREFIX = b"/p/"
MAX_URL_BYTES = 4096
MAX_HEADER_CHARS = 1024
_BAD_REQUEST = b'{"type":"about:blank","title":"Bad Request","status":400,"detail":"use /p/{tenant_slug}/{audio URL without scheme}"}'  # noqa: E501


@dataclass(frozen=True, slots=True)
class RawRequest:
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
    """Requests waiting for the recorder: appended by the prefix, swapped out whole by the recorder."""

    def __init__(self, flush_at: int = 20_000) -> None:
        self.items: list[RawRequest] = []
        self.flush_at = flush_at
        self.on_full: Callable[[], None] | None = None  # the recorder's wake-up

    def append(self, item: RawRequest) -> None:
        self.items.append(item)
        if len(self.items) >= self.flush_at and self.on_full is not None:
            self.on_full()

    def take(self) -> list[RawRequest]:
        items, self.items = self.items, []
        return items

    def __len__(self) -> int:
        return len(self.items)


def trusted_networks(cidrs: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs if cidr.strip())


class PrefixMiddleware:
    """Answers ``/p/…`` itself; everything else goes to the application."""

    def __init__(
        self,
        app: ASGIApp,
        buffer: Buffer,
        trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (),
    ) -> None:
        self.app = app
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        if not raw_path.startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        await self._redirect(scope, raw_path, send)

    async def _redirect(self, scope: Scope, raw_path: bytes, send: Send) -> None:
        slug, _, rest = raw_path[3:].partition(b"/")
        query: bytes = scope.get("query_string", b"")
        if not slug or not rest or rest[0] == 47 or len(rest) + len(query) > MAX_URL_BYTES:  # 47 = "/"
            await _answer(send, 400, [(b"content-type", b"application/problem+json")], _BAD_REQUEST)
            return
        target = rest + b"?" + query if query else rest
        await _answer(
            send,
            302,
            [(b"location", b"https://" + target), (b"cache-control", b"private, no-cache"), (b"content-length", b"0")],
            b"",
        )
        user_agent = referer = range_ = forwarded = ""
        for name, value in scope["headers"]:
            if name == b"user-agent":
                user_agent = value.decode("latin-1")[:MAX_HEADER_CHARS]
            elif name == b"referer":
                referer = value.decode("latin-1")[:MAX_HEADER_CHARS]
            elif name == b"range":
                range_ = value.decode("latin-1")[:200]
            elif name == b"x-forwarded-for":
                forwarded = value.decode("latin-1")
        client = scope.get("client")
        address = client[0] if client else ""
        if forwarded and self.trusted_proxies and self._is_trusted(address):
            # The nearest hop not ours is the client: walk X-Forwarded-For from the right.
            for hop in reversed(forwarded.split(",")):
                hop = hop.strip()
                address = hop
                if not self._is_trusted(hop):
                    break
        self.buffer.append(
            RawRequest(
                at=time.time(),
                slug=slug.decode("latin-1")[:100],
                url=target.decode("latin-1"),
                address=address,
                user_agent=user_agent,
                referer=referer,
                range=range_,
                method=scope["method"],
            )
        )


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    if body:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
