"""Matching a requested URL to an episode's audio URL, whatever measurement prefixes sit in front.

Feeds often chain prefixes (``dts.podtrac.com/redirect.mp3/chrt.fm/track/X/host/ep.mp3``) and the
episode's own ``audio_url`` may carry a different chain from the one a player requests. Both sides are
reduced to the same key: scheme, known prefixes, query and fragment removed, host lower-cased.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import unquote

# Known redirect prefixes (host and path up to where the next URL starts), applied repeatedly.
_PREFIXES = [
    r"(?:www\.|dts\.)?podtrac\.com/(?:pts/)?redirect\.[a-z0-9]{2,4}/",
    r"chrt\.fm/track/[^/]+/",
    r"pdst\.fm/e/",
    r"op3\.dev/e(?:,[^/]*)?/",
    r"(?:www\.)?podtrac\.com/pts/redirect\.[a-z0-9]{2,4}/",
    r"media\.blubrry\.com/[^/]+/",
    r"pfx\.vpixl\.com/[^/]+/",
    r"mgln\.ai/e/[^/]+/",
    r"arttrk\.com/p/[^/]+/",
    r"(?:verifi\.podscribe\.com|pscrb\.fm)/rss/p/",
    r"prfx\.byspotify\.com/e/",
    r"tracking\.swap\.fm/track/[^/]+/",
    r"claritaspod\.com/measure/",
]
_PREFIX = re.compile("^(?:" + "|".join(_PREFIXES) + ")", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def _strip_prefix(rest: str) -> str:
    stripped = _PREFIX.sub("", rest, count=1)
    return _SCHEME.sub("", stripped)  # some prefixes embed the full URL with its scheme


def _host(rest: str) -> str:
    return rest.split("#", 1)[0].split("?", 1)[0].partition("/")[0].lower()


def chain_hosts(url: str) -> list[str]:
    """Every host a request for ``url`` reaches: its own, then each one a known prefix redirects to
    (``dts.podtrac.com/redirect.mp3/media.example.com/e.mp3``: both), lower-case, with any port."""
    rest = unquote(_SCHEME.sub("", url.strip()))
    hosts = [_host(rest)]
    for _ in range(10):
        stripped = _strip_prefix(rest)
        if stripped == rest:
            break
        rest = stripped
        hosts.append(_host(rest))
    return hosts


@functools.lru_cache(maxsize=65_536)
def match_key(url: str) -> str:
    """``host/path`` of the audio file a URL finally points at (lower-case host, no query)."""
    rest = unquote(_SCHEME.sub("", url.strip()))
    for _ in range(10):
        stripped = _strip_prefix(rest)
        if stripped == rest:
            break
        rest = stripped
    rest = rest.split("#", 1)[0].split("?", 1)[0]
    host, slash, path = rest.partition("/")
    return host.lower() + slash + path
