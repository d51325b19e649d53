"""Parsing podcast RSS into plain dataclasses: lenient with real-world feeds, never raising.

feedparser does the XML work (strict SAX parser first, a forgiving one when the document is not
well-formed, with encoding detection and its own HTML sanitiser). This module maps its result to the
fields the catalog stores, re-sanitises every piece of HTML with nh3 (an allowlist we control), and
turns every oddity it tolerates into a human-readable warning instead of an exception, so one bad
item or date never loses a whole feed.

Four things feedparser gets wrong for podcasts are corrected on the raw bytes before parsing (see
``_prepare``): leading whitespace before the XML declaration (common, and it forces the loose parser),
``<podcast:episode display="…">54</podcast:episode>`` (feedparser drops the text of unknown elements
that have attributes), ``podcast:liveItem`` blocks (unknown to feedparser, their titles overwrite the
channel's) and ``itunes:explicit`` spelled ``true``/``false`` (feedparser only knows ``yes``/``clean``).
"""

from __future__ import annotations

import calendar
import email.utils
import html
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import feedparser
import nh3

ALLOWED_TAGS = frozenset({"p", "br", "a", "b", "strong", "i", "em", "ul", "ol", "li", "blockquote"})
ALLOWED_ATTRIBUTES = {"a": {"href"}}
ALLOWED_URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener nofollow"

# A longer "duration" is a publishing mistake, not an episode.
MAX_DURATION_SECONDS = 7 * 24 * 3600

_ITUNES_NAMESPACES = frozenset({"http://www.itunes.com/dtds/podcast-1.0.dtd"})
_PODCAST_NAMESPACES = frozenset(
    {
        "https://podcastindex.org/namespace/1.0",
        "https://github.com/podcastindex-org/podcast-namespace/blob/main/docs/1.0.md",
    }
)


@dataclass(slots=True)
class ParsedEpisode:
    guid: str
    title: str | None = None
    description_html: str | None = None
    episode_number: int | None = None
    season: int | None = None
    published_at: datetime | None = None
    duration_seconds: int | None = None
    audio_url: str | None = None
    audio_type: str | None = None
    audio_length_bytes: int | None = None
    explicit: bool | None = None
    image_url: str | None = None


@dataclass(slots=True)
class ParsedFeed:
    title: str | None = None
    description_html: str | None = None
    website_url: str | None = None
    image_url: str | None = None
    author: str | None = None
    language: str | None = None
    podcast_guid: str | None = None
    episodes: list[ParsedEpisode] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bozo: bool = False


def parse_feed(body: bytes, *, base_url: str | None = None) -> ParsedFeed:
    """Parse a feed document. Never raises: what cannot be read becomes a warning.

    ``base_url`` (the URL the feed was fetched from) resolves relative links and enclosure URLs.
    """
    result = ParsedFeed()
    try:
        prepared, podcast_prefixes = _prepare(body, result.warnings)
        # A BytesIO, never the bytes themselves: feedparser treats a bytes/str argument that names
        # an existing path or URL as something to open.
        parsed = feedparser.parse(
            io.BytesIO(prepared),
            response_headers={"content-location": base_url} if base_url else None,
        )
    except Exception as exc:  # feedparser is lenient, but a crash must not lose the caller's run
        result.bozo = True
        result.warnings.append(f"feed could not be parsed: {type(exc).__name__}: {exc}")
        return result

    if parsed.get("bozo"):
        result.bozo = True
        reason = parsed.get("bozo_exception")
        result.warnings.append(f"feed is not well-formed XML, parsed leniently: {reason}")

    entries = parsed.get("entries") or []
    if not parsed.get("version") and not entries:
        result.warnings.append("document is not an RSS or Atom feed: no channel or items found")
        return result

    channel = parsed.get("feed") or {}
    try:
        _map_channel(result, channel, base_url, podcast_prefixes)
    except Exception as exc:
        result.warnings.append(f"podcast fields could not be read: {type(exc).__name__}: {exc}")

    seen_guids: set[str] = set()
    for index, entry in enumerate(entries, start=1):
        try:
            episode = _map_entry(entry, index, base_url, podcast_prefixes, result.warnings)
        except Exception as exc:  # one broken item must not lose the others
            result.warnings.append(f"item {index}: skipped, could not be read: {type(exc).__name__}: {exc}")
            continue
        if episode is None:
            continue
        if episode.guid in seen_guids:
            result.warnings.append(
                f"item {index} ({_label(episode.title)}): duplicate guid {episode.guid!r}, keeping the first"
            )
            continue
        seen_guids.add(episode.guid)
        result.episodes.append(episode)
    return result


# --- durations and dates --------------------------------------------------------------------------

_DURATION_PART = re.compile(r"\d{1,9}(?:[.,]\d{1,9})?")


def parse_duration(text: str | None) -> int | None:
    """``itunes:duration`` as whole seconds: ``3723``, ``3723.5``, ``62:03``, ``1:02:03``, ``01:02:03.250``.

    Lenient on purpose: minutes over 59 (``92:20``) are taken at face value, as players do. Fractions
    round half up. Anything else — empty, negative, words, more than three parts, more than a week — is
    ``None``.
    """
    if text is None:
        return None
    parts = [part.strip() for part in text.strip().split(":")]
    if not parts[0] or len(parts) > 3:
        return None
    total = 0.0
    for position, part in enumerate(parts):
        if not _DURATION_PART.fullmatch(part):
            return None
        if ("." in part or "," in part) and position != len(parts) - 1:
            return None  # only the seconds may have a fraction
        total = total * 60 + float(part.replace(",", "."))
    seconds = int(total + 0.5)
    return seconds if seconds <= MAX_DURATION_SECONDS else None


# Zone names seen in feeds beyond the US ones RFC 822 defines (email.utils knows those), in minutes.
_ZONE_OFFSETS = {
    "UT": 0,
    "UTC": 0,
    "GMT": 0,
    "Z": 0,
    "WET": 0,
    "WEST": 60,
    "BST": 60,
    "CET": 60,
    "MET": 60,
    "CEST": 120,
    "MEST": 120,
    "EET": 120,
    "EEST": 180,
    "MSK": 180,
    "EST": -300,
    "EDT": -240,
    "CST": -360,
    "CDT": -300,
    "MST": -420,
    "MDT": -360,
    "PST": -480,
    "PDT": -420,
    "AKST": -540,
    "AKDT": -480,
    "HST": -600,
    "AST": -240,
    "ADT": -180,
    "NST": -210,
    "NDT": -150,
    "JST": 540,
    "KST": 540,
    "HKT": 480,
    "SGT": 480,
    "AWST": 480,
    "ACST": 570,
    "ACDT": 630,
    "AEST": 600,
    "AEDT": 660,
    "NZST": 720,
    "NZDT": 780,
}
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NUMERIC_ZONE = re.compile(r"([+-])(\d{2}):?(\d{2})")
_GMT_OFFSET_ZONE = re.compile(r"(?:GMT|UTC|UT)([+-])(\d{1,2})(?::?(\d{2}))?", re.IGNORECASE)
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")
_ISO_START = re.compile(r"\d{4}-?\d{2}")


def parse_date(text: str | None) -> datetime | None:
    """A feed date as a timezone-aware UTC datetime, or ``None`` when it cannot be read.

    Takes RFC 822 as feeds really write it (wrong or missing day names, full month names, two-digit
    years, ``1500`` for ``15:00``, zones like ``CEST``, ``GMT+2``, ``+02:00`` or ``-0000``, a trailing
    ``(PDT)`` comment) and ISO 8601 (``Z``, offsets, nanoseconds, a space instead of ``T``). A date
    without a zone, or with a zone name nobody defines, is taken as UTC: hours off beats no date.
    """
    if text is None:
        return None
    value = " ".join(text.split())
    if not value:
        return None
    parsed = _parse_iso_date(value) if _ISO_START.match(value) else _parse_rfc822_date(value)
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):  # year 1 minus an offset
        return None


def _parse_iso_date(value: str) -> datetime | None:
    value = _LONG_FRACTION.sub(r"\1", value)
    head, _, last = value.rpartition(" ")
    offset = _zone_offset(last) if head else None
    if offset is not None:  # "2015-11-07 12:00:00 EST"
        value = head + _format_offset(offset)
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _parse_rfc822_date(value: str) -> datetime | None:
    value = re.sub(r"\s*\([^)]*\)\s*$", "", value)  # "-0700 (PDT)"
    tokens = value.replace(",", " ").split()
    # The day name carries no information (and is often wrong): drop it, whatever its spelling.
    while tokens and tokens[0].isalpha() and tokens[0][:3].lower() in _DAY_NAMES:
        tokens.pop(0)
    if len(tokens) < 3:
        return None
    if len(tokens) == 3:  # a date alone: midnight
        tokens.append("00:00:00")
    if len(tokens) >= 4 and re.fullmatch(r"\d{4}", tokens[3]) and tokens[2].isdigit():
        tokens[3] = f"{tokens[3][:2]}:{tokens[3][2:]}"  # "03 Apr 02 1500 GMT"
    offset = _zone_offset(tokens[-1]) if len(tokens) >= 5 else None
    if offset is not None:
        tokens[-1] = _format_offset(offset).replace(":", "")
    elif len(tokens) == 4:  # no zone: UTC
        tokens.append("+0000")
    try:
        return email.utils.parsedate_to_datetime(" ".join(tokens))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _zone_offset(token: str) -> int | None:
    """Minutes east of UTC for a zone token, or None when the token is not a zone we know."""
    upper = token.upper()
    if upper in _ZONE_OFFSETS:
        return _ZONE_OFFSETS[upper]
    match = _NUMERIC_ZONE.fullmatch(token)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        return sign * (int(match.group(2)) * 60 + int(match.group(3)))
    match = _GMT_OFFSET_ZONE.fullmatch(token)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        return sign * (int(match.group(2)) * 60 + int(match.group(3) or 0))
    return None


def _format_offset(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


# --- raw-bytes corrections ------------------------------------------------------------------------

_XMLNS = re.compile(rb"""xmlns:([A-Za-z_][\w.-]*)\s*=\s*["']([^"']*)["']""")
_LEADING_SPACE = re.compile(rb"\A(\xef\xbb\xbf)?([ \t\r\n]+)(?=<\?xml)")


def _prepare(body: bytes, warnings: list[str]) -> tuple[bytes, set[str]]:
    """Fix, on the raw bytes, the few things that make feedparser lose podcast data.

    Byte-level regexes are safe for every ASCII-compatible encoding (UTF-8, ISO-8859-*, cp125x): no
    ASCII byte occurs inside a multi-byte UTF-8 sequence. A UTF-16 feed simply gets no corrections.
    """
    itunes_prefixes: set[str] = set()
    podcast_prefixes: set[str] = set()
    for prefix, uri in _XMLNS.findall(body):
        normalised = uri.decode("ascii", "replace").strip().rstrip("/").lower()
        if normalised in _ITUNES_NAMESPACES:
            itunes_prefixes.add(prefix.decode("ascii"))
        elif normalised in _PODCAST_NAMESPACES:
            podcast_prefixes.add(prefix.decode("ascii"))

    match = _LEADING_SPACE.match(body)
    if match:
        # Not well-formed as served (the declaration must come first); every reader strips it.
        warnings.append(f"whitespace before the XML declaration ({len(match.group(2))} bytes) was ignored")
        body = (match.group(1) or b"") + body[match.end() :]

    for prefix in podcast_prefixes:
        name = re.escape(prefix.encode("ascii"))
        # A live stream is not an episode, and feedparser, not knowing the element, would let its
        # <title>, <link> and <description> overwrite the channel's.
        body = re.sub(rb"<" + name + rb":liveItem\b.*?</" + name + rb":liveItem\s*>", b"", body, flags=re.DOTALL)
        body = re.sub(rb"<(" + name + rb":(?:episode|season))\s[^>]*?(/?)>", rb"<\1\2>", body)

    for prefix in itunes_prefixes:
        name = re.escape(prefix.encode("ascii"))
        body = re.sub(
            rb"(<" + name + rb":explicit\b[^>]*>)\s*([^<]*?)\s*(</" + name + rb":explicit\s*>)",
            _normalise_explicit,
            body,
        )
    return body, podcast_prefixes


def _normalise_explicit(match: re.Match[bytes]) -> bytes:
    value = match.group(2).lower()
    if value in (b"yes", b"true", b"explicit"):
        value = b"yes"
    elif value in (b"no", b"false", b"clean"):
        value = b"clean"
    return match.group(1) + value + match.group(3)


# --- mapping --------------------------------------------------------------------------------------


def _map_channel(result: ParsedFeed, channel: Any, base_url: str | None, podcast_prefixes: set[str]) -> None:
    result.title = _text(channel.get("title"))
    # RSS <description>, itunes:summary and itunes:subtitle end up in summary/subtitle depending on
    # their order in the document; the long text is the description.
    candidates = [
        (channel.get("summary"), channel.get("summary_detail")),
        (channel.get("subtitle"), channel.get("subtitle_detail")),
    ]
    text, detail = max(candidates, key=lambda pair: len(pair[0]) if isinstance(pair[0], str) else -1)
    result.description_html = _html(text, detail)
    result.website_url = _url(channel.get("link"), base_url)
    result.image_url = _url(_href(channel.get("image")), base_url)
    result.author = _text(channel.get("author")) or _text(channel.get("itunes_author"))
    result.language = _text(channel.get("language"))
    result.podcast_guid = _first(channel, podcast_prefixes, "guid")


def _map_entry(
    entry: Any, index: int, base_url: str | None, podcast_prefixes: set[str], warnings: list[str]
) -> ParsedEpisode | None:
    title = _text(entry.get("title")) or _text(entry.get("itunes_title"))
    where = f"item {index} ({_label(title)})"

    enclosure = next((e for e in entry.get("enclosures") or [] if _text(e.get("href"))), None)
    audio_url = _url(enclosure.get("href"), base_url) if enclosure is not None else None

    guid = _text(entry.get("id"))
    if guid is None:
        if audio_url is None:
            warnings.append(f"{where}: skipped, it has neither a guid nor an enclosure")
            return None
        warnings.append(f"{where}: missing or empty guid, the enclosure URL stands in for it")
        guid = audio_url

    episode = ParsedEpisode(guid=guid, title=title, audio_url=audio_url)
    if enclosure is None:
        warnings.append(f"{where}: no enclosure (no audio URL)")
    else:
        episode.audio_type = _text(enclosure.get("type"))
        length = _text(enclosure.get("length"))
        # length="0" is the conventional "unknown"; junk lengths are advisory data, not worth a warning.
        if length is not None and length.isdigit() and int(length) > 0:
            episode.audio_length_bytes = int(length)

    episode.description_html = _entry_html(entry)
    episode.episode_number = _count(
        _text(entry.get("itunes_episode")) or _first(entry, podcast_prefixes, "episode"), where, "episode", warnings
    )
    episode.season = _count(
        _text(entry.get("itunes_season")) or _first(entry, podcast_prefixes, "season"), where, "season", warnings
    )

    # dict.get: FeedParserDict.get maps a missing "updated" to "published" with a DeprecationWarning.
    raw_date = _text(dict.get(entry, "published")) or _text(dict.get(entry, "updated"))
    episode.published_at = parse_date(raw_date) or _from_struct(
        dict.get(entry, "published_parsed") or dict.get(entry, "updated_parsed")
    )
    if raw_date is not None and episode.published_at is None:
        warnings.append(f"{where}: unreadable date {raw_date!r}")

    raw_duration = _text(entry.get("itunes_duration"))
    episode.duration_seconds = parse_duration(raw_duration)
    if raw_duration is not None and episode.duration_seconds is None:
        warnings.append(f"{where}: unreadable duration {raw_duration!r}")

    explicit = entry.get("itunes_explicit")
    episode.explicit = explicit if isinstance(explicit, bool) else None
    episode.image_url = _url(_href(entry.get("image")), base_url)
    return episode


def _entry_html(entry: Any) -> str | None:
    """content:encoded (the full show notes) when there is HTML there, else the description."""
    for content in entry.get("content") or []:
        if content.get("type") in ("text/html", "application/xhtml+xml") and _text(content.get("value")):
            return _html(content.get("value"), content)
    return _html(entry.get("summary"), entry.get("summary_detail"))


def _html(value: Any, detail: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    if detail is not None and detail.get("type") == "text/plain":
        text = html.escape(text).replace("\n", "<br>")
    cleaned = nh3.clean(
        text,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        link_rel=LINK_REL,
        url_schemes=set(ALLOWED_URL_SCHEMES),
    ).strip()
    return cleaned or None


def _count(value: str | None, where: str, what: str, warnings: list[str]) -> int | None:
    if value is None:
        return None
    match = re.fullmatch(r"(\d{1,9})(?:\.0+)?", value.strip())
    if match is None:
        warnings.append(f"{where}: unreadable {what} number {value!r}")
        return None
    return int(match.group(1))


def _first(context: Any, prefixes: set[str], name: str) -> str | None:
    for prefix in sorted(prefixes):
        value = _text(context.get(f"{prefix.lower()}_{name}"))
        if value is not None:
            return value
    return None


def _from_struct(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    stripped = value.strip()
    return stripped or None


def _href(value: Any) -> str | None:
    return _text(value.get("href")) if hasattr(value, "get") else None


def _url(value: Any, base_url: str | None) -> str | None:
    text = _text(value)
    if text is None:
        return None
    return urljoin(base_url, text) if base_url else text


def _label(title: str | None) -> str:
    if title is None:
        return "untitled"
    return repr(title if len(title) <= 60 else title[:57] + "...")


__all__ = ["ParsedEpisode", "ParsedFeed", "parse_date", "parse_duration", "parse_feed"]
