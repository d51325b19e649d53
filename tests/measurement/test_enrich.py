"""Enrichment pieces: Range parsing, client keys, countries, data-centre ranges, URL matching."""

from __future__ import annotations

import random

import pytest

from castmetrics.measurement.enrich import AddressRanges, _countries, client_bytes, parse_range
from castmetrics.measurement.urls import match_key


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", (None, False)),
        ("bytes=0-1", (2, True)),
        ("bytes=0-0", (1, True)),
        ("bytes=0-", (None, False)),
        ("bytes=100-199", (100, False)),
        ("bytes=-500", (500, False)),
        ("bytes=0-99, 200-299", (200, False)),
        ("BYTES = 0-9", (10, False)),
        ("bytes=9-0", (None, False)),
        ("items=0-5", (None, False)),
        ("bytes=abc", (None, False)),
        ("bytes=0-99999999999999999999", (None, False)),
    ],
)
def test_range_headers(header: str, expected: tuple[int | None, bool]) -> None:
    assert parse_range(header) == expected


def test_client_keys_truncate_ipv6_to_64_bits() -> None:
    assert client_bytes("203.0.113.9") == bytes([203, 0, 113, 9])
    assert client_bytes("2001:db8:1:2:aaaa::1") == client_bytes("2001:db8:1:2:bbbb::2")
    assert client_bytes("2001:db8:1:2::1") != client_bytes("2001:db8:1:3::1")
    assert client_bytes("::ffff:203.0.113.9") == client_bytes("203.0.113.9")


def test_countries_agree_with_the_library() -> None:
    countries = _countries()
    assert countries.fast
    rng = random.Random(3)
    addresses = [".".join(str(rng.randrange(1, 255)) for _ in range(4)) for _ in range(3000)]
    addresses += ["8.8.8.8", "81.2.69.160", "2a00:1450:4001:81b::200e", "10.0.0.1", "::1", "not an address"]
    for address in addresses:
        expected = countries.library.lookup(address).country_code
        expected = expected if isinstance(expected, str) and len(expected) == 2 and expected.isalpha() else None
        assert countries.code(address) == expected, address
    assert countries.code("8.8.8.8") == "US"


def test_datacenter_ranges() -> None:
    ranges = AddressRanges(["198.51.100.0/24", "198.51.100.128/25", "2001:db8::/32", "203.0.113.0/25"])
    assert "198.51.100.200" in ranges and "203.0.113.127" in ranges and "2001:db8:ffff::1" in ranges
    assert "203.0.113.128" not in ranges and "198.51.101.1" not in ranges and "junk" not in ranges
    assert "2001:db9::1" not in ranges


@pytest.mark.parametrize(
    "url",
    [
        "https://media.example.com/show/e1.mp3",
        "media.example.com/show/e1.mp3?token=1",
        "dts.podtrac.com/redirect.mp3/media.example.com/show/e1.mp3",
        "https://dts.podtrac.com/redirect.mp3/chrt.fm/track/AB12/media.example.com/show/e1.mp3",
        "op3.dev/e,pg=5f1e/https://media.example.com/show/e1.mp3",
        "pdst.fm/e/MEDIA.example.com/show/e1.mp3",
        "MEDIA.example.com/show/e1.mp3#t=3",
    ],
)
def test_prefix_chains_reduce_to_the_audio_file(url: str) -> None:
    assert match_key(url) == "media.example.com/show/e1.mp3"
