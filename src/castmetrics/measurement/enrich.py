"""Turning a raw prefix request into what is stored: the address becomes a hash and a country.

Runs in the recorder, never on the request path. The raw address is used here, in memory, and
dropped: what leaves is a keyed hash with a salt that changes every UTC day (the dedupe key), a
stable keyed hash fed only to HyperLogLog sketches (which keep no hashes), and the country.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import hmac
import ipaddress
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from castmetrics.measurement import useragents
from castmetrics.measurement.prefix import RawRequest

_RANGE = re.compile(r"^\s*bytes\s*=\s*(.+)$", re.IGNORECASE)
PROBE_MAX_BYTES = 2


def parse_range(header: str) -> tuple[int | None, bool]:
    """(bounded byte count, probe) of a Range header. An open-ended range (``bytes=N-``) or no
    (or an unreadable) Range is ``None``: it asks for the rest of the file."""
    if not header:
        return None, False
    match = _RANGE.match(header)
    if not match:
        return None, False
    total = 0
    for part in match.group(1).split(","):
        first, dash, last = part.strip().partition("-")
        if not dash:
            return None, False
        try:
            if not first:  # suffix: the last N bytes
                total += int(last)
            elif not last:
                return None, False
            else:
                start, end = int(first), int(last)
                if end < start:
                    return None, False
                total += end - start + 1
        except ValueError:
            return None, False
    return total, total <= PROBE_MAX_BYTES


def client_bytes(address: str) -> bytes:
    """The address part of the client key: IPv4 whole, IPv6 its first 64 bits."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address.encode()[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped.packed
        return ip.packed[:8]
    return ip.packed


class AddressRanges:
    """Data-centre ranges (a CIDR per line, ``#`` comments), merged and matched by binary search."""

    def __init__(self, cidrs: list[str]) -> None:
        spans = sorted(
            (net.version, int(net.network_address), int(net.broadcast_address))
            for net in (ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)
        )
        merged: list[tuple[int, int, int]] = []
        for version, start, end in spans:
            if merged and merged[-1][0] == version and start <= merged[-1][2] + 1:
                last = merged[-1]
                merged[-1] = (version, last[1], max(last[2], end))
            else:
                merged.append((version, start, end))
        self._starts = [(version, start) for version, start, _ in merged]
        self._spans = merged

    @classmethod
    def from_file(cls, path: Path | None) -> AddressRanges:
        if path is None:
            return cls([])
        entries = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
        return cls([entry for entry in entries if entry])

    def __len__(self) -> int:
        return len(self._spans)

    def __contains__(self, address: object) -> bool:
        if not self._spans or not isinstance(address, str):
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        index = bisect.bisect_right(self._starts, (ip.version, int(ip))) - 1
        if index < 0:
            return False
        version, start, end = self._spans[index]
        return version == ip.version and start <= int(ip) <= end


@functools.lru_cache(maxsize=1)
def _geo() -> Any:
    from geoip2fast import GeoIP2Fast  # loads its bundled data (IPv4 and IPv6) once per process

    return GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz")


def country_of(address: str) -> str | None:
    try:
        code = _geo().lookup(address).country_code
    except Exception:  # noqa: BLE001 - an unreadable address has no country
        return None
    return code if isinstance(code, str) and len(code) == 2 and code.isalpha() else None


@dataclass
class Enricher:
    key: bytes  # the measurement key (derived from the secret key)
    datacenters: AddressRanges

    @functools.lru_cache(maxsize=8)  # noqa: B019 - a handful of days, for the process's lifetime
    def salt(self, day: date) -> bytes:
        return hmac.new(self.key, b"client-salt:" + day.isoformat().encode(), hashlib.sha256).digest()

    def __hash__(self) -> int:
        return id(self)

    def enrich(self, raw: RawRequest) -> dict[str, Any]:
        moment = datetime.fromtimestamp(raw.at, UTC)
        address = client_bytes(raw.address)
        agent = raw.user_agent.encode("utf-8", "replace")
        client = hmac.new(self.salt(moment.date()), address + b"\n" + agent, hashlib.sha256).digest()[:16]
        stable = hmac.new(self.key, b"sketch:" + address + b"\n" + agent, hashlib.sha256).digest()[:16]
        info = useragents.classify(raw.user_agent, raw.referer)
        range_bytes, probe = parse_range(raw.range)
        return {
            "id": str(uuid.uuid4()),
            "at": raw.at,
            "slug": raw.slug,
            "url": raw.url,
            "client_hash": client.hex(),
            "sketch_key": stable.hex(),
            "user_agent": raw.user_agent,
            "referer": raw.referer or None,
            "method": raw.method,
            "range_header": raw.range or None,
            "range_bytes": range_bytes,
            "is_probe": probe,
            "is_bot": info.is_bot or raw.address in self.datacenters,
            "agent_type": info.type,
            "app": info.app_name,
            "device": info.device,
            "device_category": info.device_category,
            "os": info.os,
            "browser": info.browser,
            "country": country_of(raw.address),
        }
