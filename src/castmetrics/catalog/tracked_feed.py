"""The tracked feed: the publisher's XML with every media URL sent through our measurement prefix.

``https://cdn.host/a.mp3?x=1`` becomes ``{prefix_base}/cdn.host/a.mp3?x=1`` (the prefix redirects to
the original after counting the download, the convention OP3 and Podtrac use; other prefixes already
in the URL stay in the chain).

Only the ``url`` attribute values of ``<enclosure>`` and of audio/video ``<media:content>`` tags change;
every other byte of the document is kept. Re-serialising through an XML library would normalise
quoting, namespace declarations, CDATA sections and entity spelling, and would fail outright on the
many feeds that are not well-formed but that podcast apps read anyway. Tags inside CDATA sections
and comments (show notes quoting XML) are not touched.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

# An opening tag whose attribute values may contain ">" — hence the quoted-value alternation.
_ATTRIBUTES = r"""(?:\s+[\w:.-]+\s*=\s*(?:"[^"]*"|'[^']*'))*\s*/?>"""
_TOKENS = re.compile(
    r"<!\[CDATA\[.*?\]\]>|<!--.*?-->|(?P<tag><(?P<name>enclosure|media:content)" + _ATTRIBUTES + ")",
    re.DOTALL,
)
_URL_ATTRIBUTE = re.compile(r"""(?P<lead>\surl\s*=\s*)(?P<quote>["'])(?P<value>.*?)(?P=quote)""", re.DOTALL)
_SCHEME = re.compile(r"\s*https?://", re.IGNORECASE)
_MEDIA_KIND = re.compile(
    r"""\s(?:type\s*=\s*["']\s*(?:audio|video)/|medium\s*=\s*["']\s*(?:audio|video)\s*["'])""",
    re.IGNORECASE,
)

# (byte order mark, codec) for the encodings that are not ASCII-compatible; longest marks first.
_BYTE_ORDER_MARKS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


def rewrite_enclosures(body: bytes, prefix_base: str) -> bytes:
    """Return ``body`` with each enclosure (and audio/video ``media:content``) URL behind ``prefix_base``.

    ``prefix_base`` is absolute, like ``https://castmetrics.example/p/acme``. Idempotent: URLs that
    already go through the prefix are left alone, as are relative URLs and schemes other than http(s).
    The document's encoding is kept: ASCII-compatible ones (UTF-8, ISO-8859-*, cp125x) byte for byte,
    UTF-16/32 by decoding and re-encoding with the same byte order mark.
    """
    prefix = _validated_prefix(prefix_base)
    mark, codec = _wide_encoding(body)
    if codec is None:
        # latin-1 maps each byte to one character and back, so for any ASCII-compatible encoding
        # the untouched bytes survive exactly, whatever the declared encoding is.
        return _rewrite_text(body.decode("latin-1"), prefix).encode("latin-1")
    text = body[len(mark) :].decode(codec, errors="surrogatepass")
    return mark + _rewrite_text(text, prefix).encode(codec, errors="surrogatepass")


def _validated_prefix(prefix_base: str) -> str:
    prefix = prefix_base.strip().rstrip("/")
    parts = urlsplit(prefix)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"prefix_base must be an absolute http(s) URL without query or fragment: {prefix_base!r}")
    if not prefix.isascii():
        raise ValueError(f"prefix_base must be ASCII (punycode the host): {prefix_base!r}")
    return prefix


def _wide_encoding(body: bytes) -> tuple[bytes, str | None]:
    for mark, codec in _BYTE_ORDER_MARKS:
        if body.startswith(mark):
            return mark, codec
    # Without a mark, the first "<" gives the byte order away.
    if body.startswith(b"<\x00") and not body.startswith(b"<\x00\x00\x00"):
        return b"", "utf-16-le"
    if body.startswith(b"\x00<") and not body.startswith(b"\x00\x00\x00<"):
        return b"", "utf-16-be"
    return b"", None


def _rewrite_text(text: str, prefix: str) -> str:
    prefix_without_scheme = _SCHEME.sub("", prefix, count=1)
    prefix_xml = html.escape(prefix, quote=True)

    def rewrite_url(match: re.Match[str]) -> str:
        value = match.group("value")
        scheme = _SCHEME.match(value)
        if scheme is None:
            return match.group(0)  # relative, or not http(s): nothing we can redirect to
        rest = value[scheme.end() :]
        unescaped = html.unescape(rest)
        if unescaped == prefix_without_scheme or unescaped.startswith(prefix_without_scheme + "/"):
            return match.group(0)  # already measured by us
        return f"{match.group('lead')}{match.group('quote')}{prefix_xml}/{rest}{match.group('quote')}"

    def rewrite_token(match: re.Match[str]) -> str:
        tag = match.group("tag")
        if tag is None:
            return match.group(0)  # CDATA or comment
        if match.group("name") == "media:content" and not _MEDIA_KIND.search(tag):
            return tag  # images and documents are not downloads
        return _URL_ATTRIBUTE.sub(rewrite_url, tag, count=1)

    return _TOKENS.sub(rewrite_token, text)


__all__ = ["rewrite_enclosures"]
