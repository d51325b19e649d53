"""Fetching a feed over HTTP(S) without letting a user-supplied URL reach into our own network.

A feed URL is user input, and so is every ``Location`` its server answers with. Each hop — the first
URL and every redirect, followed here by hand (never by httpx) — goes through the same steps:

1. Only ``http`` and ``https``; the host is resolved (``getaddrinfo``, or the injected ``resolve``)
   and the hop is refused when *any* address is loopback, private, link-local, multicast, reserved,
   unspecified or otherwise not globally routable, including those hidden inside IPv6 (IPv4-mapped,
   NAT64, 6to4, Teredo) — unless ``allow_private``. IP literals are checked the same way.
2. The connection goes to the address that was checked, never to a second lookup of the name: a
   custom httpcore network backend (``_PinnedBackend``) replaces the host with the checked addresses
   at ``connect_tcp``. Everything above the socket still uses the URL's host name — the ``Host``
   header, TLS SNI and certificate verification (httpcore takes ``server_hostname`` from the URL, not
   from the socket) — so HTTPS works unchanged and a DNS-rebinding answer between check and connect
   has nothing to act on. httpx has no public hook for a network backend, so the transport swaps its
   connection pool for an identical one that has ours (``_PinnedTransport``); the tests use host names
   that resolve nowhere but through the injected resolver, so they fail loudly if that ever stops
   taking effect.
3. Proxies from the environment are ignored (``trust_env=False``): a proxy would resolve the name
   itself and undo the check. Each hop gets a fresh connection, so no kept-alive socket to an earlier
   host is reused.

Limits: the body is streamed and abandoned past ``max_bytes`` (decoded size, so a gzip bomb stops
too; a declared ``Content-Length`` above the cap is refused before reading). ``timeout`` applies to
each read and write, and as a deadline to the whole fetch including DNS and every redirect (a server
that drips one byte a second never trips a read timeout); each connect attempt gets at most
``CONNECT_TIMEOUT`` so that a second address can still be tried.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache

import httpcore
import httpx

from castmetrics.errors import Invalid

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], Awaitable[list[str]]]
AddressPolicy = Callable[[IPAddress], bool]

DEFAULT_USER_AGENT = "Castmetrics/0.1 (+https://castmetrics.org)"
ACCEPT = "application/rss+xml, application/atom+xml;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Per address tried: a black-holed first address (say an unroutable IPv6) must leave time for the next.
CONNECT_TIMEOUT = 5.0

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT


class FeedFetchError(Invalid):
    """The feed could not be fetched: refused, unreachable, too large, too slow or an HTTP error."""

    code = "feed-fetch-failed"
    title = "Feed could not be fetched"

    def __init__(self, message: str, status: int | None = None) -> None:
        # Extras become members of the problem document, which has its own ``status``: the feed
        # server's status travels as ``upstream_status``.
        super().__init__(message, **({"upstream_status": status} if status is not None else {}))
        self.status = status


@dataclass(frozen=True, slots=True)
class FetchResult:
    final_url: str
    status: int
    not_modified: bool
    body: bytes | None
    etag: str | None
    last_modified: str | None
    content_type: str | None
    redirects: list[str] = field(default_factory=list)  # each URL redirected to, in order


async def fetch_feed(
    url: str,
    *,
    etag: str | None,
    last_modified: str | None,
    allow_private: bool,
    max_bytes: int = 20 * 1024 * 1024,
    timeout: float = 20.0,
    max_redirects: int = 5,
    user_agent: str = DEFAULT_USER_AGENT,
    resolve: Resolver | None = None,
    address_allowed: AddressPolicy | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> FetchResult:
    """GET a feed, conditionally when ``etag``/``last_modified`` are known, following redirects safely.

    ``resolve`` maps a host name to IP address strings (default: the system resolver).
    ``address_allowed`` decides which addresses count as public (default: ``is_public_address``);
    ``allow_private`` skips the check altogether (self-hosted installs fetching from their LAN).
    ``ssl_context`` replaces the default trust store (certifi). A 304 gives ``not_modified`` and no body.
    Raises ``FeedFetchError``.
    """
    try:
        async with asyncio.timeout(timeout):
            return await _fetch(
                url,
                etag=etag,
                last_modified=last_modified,
                allow_private=allow_private,
                max_bytes=max_bytes,
                timeout=timeout,
                max_redirects=max_redirects,
                user_agent=user_agent,
                resolve=resolve or resolve_host,
                address_allowed=address_allowed or is_public_address,
                ssl_context=ssl_context or _default_ssl_context(),
            )
    except TimeoutError as exc:
        raise FeedFetchError(f"timed out after {timeout:g} s fetching {_shown(url)}") from exc


def is_public_address(address: IPAddress) -> bool:
    """Whether an address is globally routable, i.e. fine to fetch a user's URL from.

    IPv6 forms that carry an IPv4 address (mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4,
    Teredo) are judged by that IPv4 address too: they reach it.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded: list[ipaddress.IPv4Address] = []
        if address.ipv4_mapped is not None:
            embedded.append(address.ipv4_mapped)
        if address in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None:
            embedded.append(address.sixtofour)
        if address.teredo is not None:
            embedded.extend(address.teredo)
        if any(not is_public_address(inner) for inner in embedded):
            return False
        if address.ipv4_mapped is not None or address in _NAT64:
            return True  # judged by the IPv4 address alone; the IPv6 ranges themselves count as reserved
    elif address in _SHARED_ADDRESS_SPACE:
        return False
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


async def resolve_host(host: str) -> list[str]:
    """The host's addresses from the system resolver, in its order, without duplicates."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def pinned_transport(
    host: str, addresses: Sequence[str], ssl_context: ssl.SSLContext | None = None, *, max_connections: int = 1
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections to ``host`` go to ``addresses`` (already checked), never
    to a new lookup of the name: the DNS-rebinding guard of ``fetch_feed`` for other user-supplied
    URLs (workflow webhooks). ``host`` is the URL's ``raw_host``; any other host is refused. A feed
    fetch makes one request at a time; a transport shared by concurrent requests (webhooks) needs
    ``max_connections`` for them, or each waits for the one before."""
    return _PinnedTransport(
        _PinnedBackend(host, addresses), ssl_context or _default_ssl_context(), max_connections=max_connections
    )


async def _fetch(
    url: str,
    *,
    etag: str | None,
    last_modified: str | None,
    allow_private: bool,
    max_bytes: int,
    timeout: float,
    max_redirects: int,
    user_agent: str,
    resolve: Resolver,
    address_allowed: AddressPolicy,
    ssl_context: ssl.SSLContext,
) -> FetchResult:
    headers = {"User-Agent": user_agent, "Accept": ACCEPT}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    redirects: list[str] = []
    current = _parse_url(url)
    while True:
        host = current.raw_host.decode("ascii")
        addresses = await _checked_addresses(current.host, host, resolve, allow_private, address_allowed)
        transport = _PinnedTransport(_PinnedBackend(host, addresses), ssl_context)
        async with httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
            follow_redirects=False,
            trust_env=False,
        ) as client:
            try:
                async with client.stream("GET", current, headers=headers) as response:
                    status = response.status_code
                    if status in REDIRECT_STATUSES:
                        location = response.headers.get("location", "").strip()
                        if not location:
                            raise FeedFetchError(
                                f"HTTP {status} redirect without a Location from {_shown(current)}", status
                            )
                        if len(redirects) >= max_redirects:
                            raise FeedFetchError(f"too many redirects (more than {max_redirects}) from {_shown(url)}")
                        current = _parse_url(_joined(current, location))
                        redirects.append(str(current))
                        continue
                    if status == 304:
                        return FetchResult(
                            final_url=str(current),
                            status=status,
                            not_modified=True,
                            body=None,
                            etag=response.headers.get("etag") or etag,
                            last_modified=response.headers.get("last-modified") or last_modified,
                            content_type=response.headers.get("content-type"),
                            redirects=redirects,
                        )
                    if not 200 <= status < 300:
                        raise FeedFetchError(f"HTTP {status} from {_shown(current)}", status)
                    body = await _read_capped(response, max_bytes)
                    return FetchResult(
                        final_url=str(current),
                        status=status,
                        not_modified=False,
                        body=body,
                        etag=response.headers.get("etag"),
                        last_modified=response.headers.get("last-modified"),
                        content_type=response.headers.get("content-type"),
                        redirects=redirects,
                    )
            except httpx.TimeoutException as exc:
                raise FeedFetchError(f"timed out fetching {_shown(current)}") from exc
            except httpx.ConnectError as exc:
                raise FeedFetchError(f"could not connect to {current.host}: {exc}") from exc
            except httpx.HTTPError as exc:
                raise FeedFetchError(f"could not fetch {_shown(current)}: {type(exc).__name__}: {exc}") from exc


def _parse_url(text: str) -> httpx.URL:
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FeedFetchError(f"invalid URL: {exc}") from exc
    if url.scheme not in ("http", "https"):
        scheme = url.scheme or "none"
        raise FeedFetchError(f"unsupported URL scheme {scheme!r} in {_shown(url)}: only http and https")
    if not url.host:
        raise FeedFetchError(f"URL has no host: {_shown(url)}")
    return url


def _joined(current: httpx.URL, location: str) -> str:
    try:
        return str(current.join(location))
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FeedFetchError(f"invalid redirect Location from {_shown(current)}: {exc}") from exc


def _shown(url: httpx.URL | str) -> str:
    """The URL for messages (stored in sync history, shown to users): without a password in it."""
    try:
        return str(httpx.URL(url).copy_with(userinfo=b""))
    except (httpx.InvalidURL, TypeError, ValueError):
        return "(invalid URL)"


@cache
def _default_ssl_context() -> ssl.SSLContext:
    # certifi's trust store, loaded once: building a context reads and parses the whole bundle.
    return httpx.create_ssl_context(trust_env=False)


async def _checked_addresses(
    display_host: str, host: str, resolve: Resolver, allow_private: bool, address_allowed: AddressPolicy
) -> list[str]:
    """The addresses to connect to for ``host``, each one checked; raises when any is refused."""
    literal = _ip_literal(host)
    if literal is not None:
        if not allow_private and not address_allowed(literal):
            raise FeedFetchError(f"refused: {display_host} is a private address")
        return [str(literal)]
    try:
        resolved = await resolve(host)
    except OSError as exc:
        raise FeedFetchError(f"could not resolve {display_host}: {exc}") from exc
    if not resolved:
        raise FeedFetchError(f"could not resolve {display_host}: no addresses")
    addresses: list[str] = []
    for text in resolved:
        address = _ip_literal(text)
        if address is None:
            raise FeedFetchError(f"could not resolve {display_host}: {text!r} is not an IP address")
        if not allow_private and not address_allowed(address):
            raise FeedFetchError(f"refused: {display_host} resolves to a private address")
        addresses.append(str(address))
    return addresses


def _ip_literal(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise FeedFetchError(f"feed larger than {max_bytes} bytes (Content-Length {declared})")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise FeedFetchError(f"feed larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections to already-checked addresses instead of resolving the host again."""

    def __init__(self, host: str, addresses: Sequence[str]) -> None:
        self._host = host.lower()
        self._addresses = list(addresses)
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if host.lower() != self._host:
            raise httpcore.ConnectError(f"refused: {host} was not checked")
        error: Exception | None = None
        for address in self._addresses:  # every one of them was checked
            try:
                return await self._backend.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error or httpcore.ConnectError(f"no address for {host}")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("user-supplied URLs are not fetched over unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, with a connection pool that connects through ``_PinnedBackend``."""

    def __init__(self, backend: _PinnedBackend, ssl_context: ssl.SSLContext, *, max_connections: int = 1) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, max_connections=max_connections, http1=True, http2=False, network_backend=backend
        )


__all__ = ["FeedFetchError", "FetchResult", "fetch_feed", "is_public_address", "pinned_transport", "resolve_host"]
