"""The tracked feed: enclosure URLs go through the measurement prefix, and nothing else changes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from castmetrics.catalog.rss import parse_feed
from castmetrics.catalog.tracked_feed import rewrite_enclosures

FEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"
PREFIX = "https://castmetrics.example/p/acme"
SHARED_FEEDS = sorted(path.name for path in FEEDS.glob("*.xml"))

ENCLOSURE_URL = re.compile(rb"""<enclosure\b[^>]*?\surl\s*=\s*(["'])(.*?)\1""", re.DOTALL)


def _enclosure_urls(body: bytes) -> list[bytes]:
    return [match.group(2) for match in ENCLOSURE_URL.finditer(body)]


def _without_schemes(body: bytes) -> bytes:
    """The document with every enclosure/media URL reduced to what follows its scheme (and prefix)."""
    body = body.replace(PREFIX.encode() + b"/", b"")
    return re.sub(rb"""(\surl\s*=\s*["'])https?://""", rb"\1", body)


def test_there_are_shared_feeds() -> None:
    assert len(SHARED_FEEDS) >= 20, FEEDS


@pytest.mark.parametrize("name", SHARED_FEEDS)
def test_every_enclosure_goes_through_the_prefix(name: str) -> None:
    original = (FEEDS / name).read_bytes()

    tracked = rewrite_enclosures(original, PREFIX)

    before, after = _enclosure_urls(original), _enclosure_urls(tracked)
    assert len(after) == len(before) > 0
    for old, new in zip(before, after, strict=True):
        assert new == PREFIX.encode() + b"/" + re.sub(rb"^https?://", b"", old)
    # Everything but the URL values is byte for byte the same (CDATA, namespaces, quoting, encoding).
    assert _without_schemes(tracked) == _without_schemes(original)


@pytest.mark.parametrize("name", SHARED_FEEDS)
def test_rewriting_is_idempotent(name: str) -> None:
    tracked = rewrite_enclosures((FEEDS / name).read_bytes(), PREFIX)

    assert rewrite_enclosures(tracked, PREFIX) == tracked
    assert rewrite_enclosures(tracked, PREFIX + "/") == tracked


@pytest.mark.parametrize("name", SHARED_FEEDS)
def test_tracked_feed_still_parses_with_the_same_episodes(name: str) -> None:
    original = parse_feed((FEEDS / name).read_bytes())

    tracked = parse_feed(rewrite_enclosures((FEEDS / name).read_bytes(), PREFIX))

    assert len(tracked.episodes) == len(original.episodes) > 0
    assert [e.title for e in tracked.episodes] == [e.title for e in original.episodes]
    for before, after in zip(original.episodes, tracked.episodes, strict=True):
        assert before.audio_url is not None
        assert after.audio_url == PREFIX + "/" + re.sub(r"^https?://", "", before.audio_url)


def test_audio_media_content_is_rewritten_but_images_are_not() -> None:
    body = (
        b'<rss xmlns:media="http://search.yahoo.com/mrss/"><channel><item>'
        b'<media:content url="https://cdn.host/a.mp3" type="audio/mpeg"/>'
        b'<media:content medium="video" url="https://cdn.host/v.mp4"/>'
        b'<media:content url="https://cdn.host/cover.jpg" type="image/jpeg"/>'
        b"</item></channel></rss>"
    )

    tracked = rewrite_enclosures(body, PREFIX)

    assert b'url="https://castmetrics.example/p/acme/cdn.host/a.mp3"' in tracked
    assert b'url="https://castmetrics.example/p/acme/cdn.host/v.mp4"' in tracked
    assert b'url="https://cdn.host/cover.jpg"' in tracked


def test_query_strings_entities_and_quotes_are_kept() -> None:
    body = b"<item><enclosure length='1' url='http://cdn.host/a.mp3?x=1&amp;y=&gt;2' type='audio/mpeg'/></item>"

    tracked = rewrite_enclosures(body, PREFIX)

    assert tracked == (
        b"<item><enclosure length='1' url='https://castmetrics.example/p/acme/cdn.host/a.mp3?x=1&amp;y=&gt;2'"
        b" type='audio/mpeg'/></item>"
    )


def test_cdata_comments_relative_and_foreign_scheme_urls_are_left_alone() -> None:
    body = (
        b'<item><description><![CDATA[<enclosure url="https://cdn.host/in-notes.mp3"/>]]></description>'
        b'<!-- <enclosure url="https://cdn.host/commented.mp3"/> -->'
        b'<enclosure url="/relative.mp3"/><enclosure url="ipfs://bafy/a.mp3"/></item>'
    )

    assert rewrite_enclosures(body, PREFIX) == body


def test_iso_8859_1_bytes_survive() -> None:
    body = '<?xml version="1.0" encoding="ISO-8859-1"?><rss><item><title>Café</title><enclosure url="http://h/ü.mp3"/></item></rss>'

    tracked = rewrite_enclosures(body.encode("iso-8859-1"), PREFIX)

    assert tracked.decode("iso-8859-1") == body.replace("http://h/", PREFIX + "/h/")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_utf_16_feed_keeps_its_encoding(encoding: str) -> None:
    original = (FEEDS / "apple-example-all-about-everything.xml").read_bytes().decode("utf-8")
    body = original.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode(encoding)

    tracked = rewrite_enclosures(body, PREFIX)

    assert tracked[:2] == body[:2]
    assert tracked.decode(encoding).count(PREFIX + "/example.com/podcasts/everything/") == 3
    assert [e.audio_url for e in parse_feed(tracked).episodes] == [
        PREFIX + "/example.com/podcasts/everything/AllAboutEverythingEpisode3.m4a",
        PREFIX + "/example.com/podcasts/everything/AllAboutEverythingEpisode2.mp3",
        PREFIX + "/example.com/podcasts/everything/AllAboutEverythingEpisode1.mp3",
    ]


@pytest.mark.parametrize(
    "prefix",
    ["castmetrics.example/p/acme", "ftp://castmetrics.example/p", "https://x.example/p?a=1", "https://ü.example/p"],
)
def test_prefix_must_be_an_absolute_ascii_http_url(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix_base must be"):
        rewrite_enclosures(b"<rss/>", prefix)
