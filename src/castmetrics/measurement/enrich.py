"""Turning a raw prefix request into what is stored: the address becomes a hash and a country.

Runs in the recorder, never on the request path. The raw address is used here, in memory, and
dropped: what leaves is a keyed hash with a salt that changes every UTC day (the dedupe key), a
stable keyed hash fed only to HyperLogLog sketches (which keep no hashes), and the country.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import ipaddress
import re
import socket
import uuid
from datetime import date
from pathlib import Path
from typing import Any

from castmetrics.measurement import useragents
from castmetrics.measurement.prefix import RawRequest

_RANGE = re.compile(r"^\s*bytes\s*=\s*(.+)$", re.IGNORECASE)
PROBE_MAX_BYTES = 2
MAX_RANGE_BYTES = 1 << 40


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
    if total > MAX_RANGE_BYTES:  # beyond any audio file: as good as "the rest of the file"
        return None, False
    return total, total <= PROBE_MAX_BYTES


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@functools.lru_cache(maxsize=65_536)
def client_bytes(address: str) -> bytes:
    """The address part of the client key: IPv4 whole, IPv6 its first 64 bits (IAB v2.1)."""
    try:
        return socket.inet_pton(socket.AF_INET, address)
    except OSError:
        pass
    try:
        packed = socket.inet_pton(socket.AF_INET6, address)
    except OSError:
        return address.encode()[:64]
    if packed[:12] == b"\x00" * 10 + b"\xff\xff":  # an IPv4-mapped IPv6 address is the IPv4 client
        return packed[12:]
    return packed[:8]


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


class _Countries:
    """Country of an address from geoip2fast's bundled data (IPv4 and IPv6), looked up by bisection
    in the tables the library loads. The library's own ``lookup`` builds a detailed result object per
    call, several times the cost; if its tables are not where this version keeps them, it is used."""

    def __init__(self) -> None:
        from geoip2fast import GeoIP2Fast
        from geoip2fast import geoip2fast as tables

        self.library = GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz")
        try:
            self.index = tables.mainIndex
            self.first_ips = tables.mainListFirstIP
            self.lengths = tables.mainListNetlength
            self.country_ids = tables.mainListIDCountryCodes
            self.codes = [name.split(":")[0] for name in tables.mainListNamesCountry]
            self.sizes_v4, self.sizes_v6, self.max_v4 = tables.numIPsv4, tables.numIPsv6, tables.MAX_IPv4
            self.fast = True
        except AttributeError:
            self.fast = False

    def code(self, address: str) -> str | None:
        if not self.fast:
            value = self.library.lookup(address).country_code
            return value if isinstance(value, str) and len(value) == 2 and value.isalpha() else None
        try:
            number = int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
        except OSError:
            try:
                number = int.from_bytes(socket.inet_pton(socket.AF_INET6, address), "big")
            except OSError:
                return None
        root = bisect.bisect_right(self.index, number) - 1
        if root < 0:
            return None
        firsts = self.first_ips[root]
        chunk = bisect.bisect_right(firsts, number) - 1
        if chunk < 0:
            return None
        length = self.lengths[root][chunk]
        size = self.sizes_v4[length] if number <= self.max_v4 else self.sizes_v6[length]
        if number > firsts[chunk] + size - 1:
            return None
        country = self.country_ids[root][chunk]
        if country < 16:  # private, reserved and special networks
            return None
        code = self.codes[country]
        return code if len(code) == 2 and code.isalpha() else None


@functools.lru_cache(maxsize=1)
def _countries() -> _Countries:
    return _Countries()


@functools.lru_cache(maxsize=65_536)
def country_of(address: str) -> str | None:
    """ISO 3166 code of the address's country; None for private, reserved or unknown addresses."""
    try:
        return _countries().code(address)
    except Exception:  # an unreadable address has no country
        return None


# An enriched record is a plain tuple (cheaper than objects at tens of thousands a second), in
# the order of FIELDS; the spool stores it as a JSON list (bytes as hex).
FIELDS = (
    "id", "at", "slug", "url", "client_hash", "sketch_key", "user_agent", "referer", "method", "range_header",
    "range_bytes", "is_probe", "is_bot", "agent_type", "app", "device", "device_category", "os", "browser",
    "country",
)  # fmt: skip
ID, AT, SLUG, URL, CLIENT_HASH, SKETCH_KEY = range(6)
METHOD, IS_PROBE, IS_BOT = 8, 11, 12
Enriched = tuple[Any, ...]


def to_json(record: Enriched) -> list[Any]:
    out = list(record)
    out[ID] = str(out[ID])
    out[CLIENT_HASH] = out[CLIENT_HASH].hex()
    return out


def from_json(item: list[Any]) -> Enriched:
    item[ID] = uuid.UUID(item[ID])
    item[CLIENT_HASH] = bytes.fromhex(item[CLIENT_HASH])
    return tuple(item)


class Enricher:
    """Hashes, country and user agent of raw requests; ids unique across processes and restarts."""

    def __init__(self, key: bytes, datacenters: AddressRanges) -> None:
        self.key = key[:64]
        self.datacenters = datacenters
        self._salts: dict[int, bytes] = {}
        self._id_base = uuid.uuid4().int & ~((1 << 64) - 1)
        self._id_next = 0

    def salt(self, day: int) -> bytes:
        """The dedupe salt of a UTC day (a date ordinal): keyed, so it cannot be derived without the key."""
        salt = self._salts.get(day)
        if salt is None:
            stamp = date.fromordinal(day).isoformat().encode()
            salt = hashlib.blake2b(stamp, key=self.key, person=b"client-salt").digest()
            if len(self._salts) > 8:
                self._salts.clear()
            self._salts[day] = salt
        return salt

    def enrich(self, raw: RawRequest) -> Enriched:
        at, slug, url, address, user_agent, referer, range_header, method = raw
        day = _EPOCH_ORDINAL + int(at // 86_400)  # the UTC day, as an ordinal
        client = client_bytes(address) + b"\n" + user_agent.encode("utf-8", "replace")
        client_hash = hashlib.blake2b(client, key=self.salt(day), digest_size=16).digest()
        sketch_key = hashlib.blake2b(client, key=self.key, digest_size=16, person=b"sketch").hexdigest()
        info = useragents.classify(user_agent, referer)
        range_bytes, probe = parse_range(range_header)
        self._id_next += 1
        return (
            uuid.UUID(int=self._id_base | self._id_next),
            at,
            slug,
            url,
            client_hash,
            sketch_key,
            user_agent,
            referer or None,
            method,
            range_header or None,
            range_bytes,
            probe,
            info.is_bot or address in self.datacenters,
            info.type,
            info.app_name,
            info.device,
            info.device_category,
            info.os,
            info.browser,
            country_of(address),
        )
