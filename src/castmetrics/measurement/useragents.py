"""Who the client is: user agents classified the OPAWG user-agents-v2 way (docs/measurement.md, rule 1).

The lists (``useragents_data/``: the Open Podcast Analytics Working Group's user-agents-v2, MIT) are
applied exactly as their README prescribes, so any two systems agree: newlines removed, then the first
matching entry of ``bots``, ``apps``, ``libraries``, ``browsers`` in that order (at most one; its file is
the type); ``devices`` for the device and its category when the type is not ``bot``; ``referrers`` on the
Referer header for browsers. Patterns are the lists' JavaScript regular expressions, read as JavaScript
reads them: case-sensitive, ``\\d``, ``\\w`` and ``\\b`` in ASCII, ``\\s`` Unicode's white space, ``.`` any
character but a line terminator. Newer lists installed with ``castmetrics useragents install`` (into
``<data_dir>/useragents/``) take the bundled ones' place; running recorders follow them (``maybe_reload``).

A user agent is a bot when an OPAWG ``bots`` entry matched; or when no OPAWG entry matched at all and
crawlerdetect calls it a crawler (never asked otherwise: it flags some real apps); or when it is missing,
empty or only whitespace. ua-parser adds what the lists never say: the OS and its version for every
counted client, the browser and its version where no app or library was named.

Speed: each list's patterns sit in RE2 sets (lazily built DFAs) that report every pattern matching the
user agent in one linear scan; the first entry in file order is the lowest index reported. A pattern RE2
cannot compile is checked with ``re`` beside the sets, and a text the sets cannot answer for (a DFA out of
memory, or a string that is not UTF-8) takes the plain loop over ``re`` patterns, so the answer never
depends on the engine (``PatternSet``). crawlerdetect's own patterns are run the same way. A user agent not
seen before costs ~20 µs in a running process (~40 µs in a fresh one, while the DFAs build their states),
against ~120 µs for the plain loop of ``re.search``; answers are cached per distinct (user agent, referrer),
~0.1 µs a lookup (``bench/useragents.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

import re2
import structlog
import ua_parser
from ua_parser import Domain

log = structlog.get_logger(__name__)

AgentType = Literal["bot", "app", "library", "browser"]
BotSource = Literal["opawg", "crawlerdetect", "no-user-agent"]

DATA_DIR: Final = Path(__file__).with_name("useragents_data")
# The entity lists in the order the algorithm tries them, with the type each one gives.
ENTITY_LISTS: Final[tuple[tuple[str, AgentType], ...]] = (
    ("bots", "bot"),
    ("apps", "app"),
    ("libraries", "library"),
    ("browsers", "browser"),
)
LIST_NAMES: Final = ("bots", "apps", "libraries", "browsers", "devices", "referrers")
CACHE_SIZE: Final = 100_000
# JavaScript's RegExp without flags: case-sensitive, ASCII character classes (RE2's are ASCII too).
PATTERN_FLAGS: Final = re.ASCII
# Upper bound of one RE2 set's memory (program and DFA state cache, which is reset when full; the sets of
# one classifier grow by ~10 MiB over tens of thousands of distinct user agents). RE2's default, 8 MiB,
# made one set of all ~950 patterns thrash; per list, as here, it would do; this leaves room.
RE2_MAX_MEM: Final = 32 << 20

# JavaScript's \s (Unicode's white space) and . (any character but a line terminator), as literal characters
# that ``re`` and RE2 both read the same way.
_JS_SPACE = "\t\n\x0b\x0c\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_JS_DOT = "[^\n\r\u2028\u2029]"
_ENTRY_FIELDS = frozenset({"name", "pattern", "category", "description", "svg", "comments", "urls", "examples"})
_NEWLINES = str.maketrans("", "", "\r\n")


class UserAgentListError(ValueError):
    """A folder of lists that cannot be loaded: a file missing, malformed JSON, a pattern that does not compile."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of a list, with every field the lists' schema defines; fields it does not define are kept
    in ``extra`` as they are."""

    name: str
    pattern: str
    category: str | None = None
    description: str | None = field(default=None, repr=False)
    svg: str | None = None
    comments: str | None = field(default=None, repr=False)
    urls: tuple[str, ...] = field(default=(), repr=False)
    examples: tuple[str, ...] = field(default=(), repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PatternList:
    """One list file: its entries in file order, and the file's own usage notes."""

    name: str
    entries: tuple[Entry, ...]
    comments: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UserAgentInfo:
    """What a user agent (and, for browsers, the Referer) says about the client.

    ``type``, ``name`` and ``category`` come from the OPAWG entry that matched (None when none did);
    ``device`` and ``device_category`` from ``devices`` (unless the type is ``bot``); ``referrer`` and
    ``referrer_category`` (``app`` for web apps, ``host`` for hosting companies' players) from ``referrers``,
    for browsers. ua-parser fills in where the lists are silent, never for bots: ``os`` and ``os_version``;
    ``browser_version`` for a listed browser (``browser`` is then the list's name), ``browser`` and
    ``browser_version`` for a client no entry named. ``is_bot`` is rule 1 of the counting, and
    ``bot_source`` says which part of the rule decided. The ``*entry`` fields carry the entries whole.
    """

    is_bot: bool
    type: AgentType | None = None
    name: str | None = None
    category: str | None = None
    device: str | None = None
    device_category: str | None = None
    referrer: str | None = None
    referrer_category: str | None = None
    os: str | None = None
    os_version: str | None = None
    browser: str | None = None
    browser_version: str | None = None
    bot_source: BotSource | None = None
    entry: Entry | None = field(default=None, repr=False)
    device_entry: Entry | None = field(default=None, repr=False)
    referrer_entry: Entry | None = field(default=None, repr=False)

    @property
    def app_name(self) -> str | None:
        """The client to report: the web app or host player the Referer named, else the entry's name."""
        return self.referrer if self.referrer is not None else self.name


NO_USER_AGENT: Final = UserAgentInfo(is_bot=True, bot_source="no-user-agent")


def read_lists(folder: Path | str) -> dict[str, PatternList]:
    """Read and check the six list files of ``folder``; a clear :class:`UserAgentListError` otherwise."""
    path = Path(folder)
    missing = [f"{name}.json" for name in LIST_NAMES if not (path / f"{name}.json").is_file()]
    if missing:
        raise UserAgentListError(f"{path}: missing {', '.join(missing)}")
    return {name: _read_list(path / f"{name}.json", name) for name in LIST_NAMES}


def _read_list(path: Path, name: str) -> PatternList:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserAgentListError(f"{path}: not a readable JSON document: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("entries"), list):
        raise UserAgentListError(f"{path}: expected an object with an 'entries' array")
    comments = document.get("comments", [])
    if not _strings(comments):
        raise UserAgentListError(f"{path}: 'comments' must be an array of strings")
    entries: list[Entry] = []
    names: set[str] = set()
    for index, raw in enumerate(document["entries"]):
        entry = _entry(raw, f"{path.name}: entry {index}")
        if entry.name.lower() in names:
            raise UserAgentListError(f"{path.name}: entry {index}: the name {entry.name!r} is not unique")
        names.add(entry.name.lower())
        entries.append(entry)
    return PatternList(name, tuple(entries), tuple(comments))


def _entry(raw: object, where: str) -> Entry:
    if not isinstance(raw, dict):
        raise UserAgentListError(f"{where}: expected an object")
    name, pattern = raw.get("name"), raw.get("pattern")
    if not isinstance(name, str) or not name.strip():
        raise UserAgentListError(f"{where}: 'name' must be a non-blank string")
    where = f"{where} ({name!r})"
    if not isinstance(pattern, str) or not pattern.strip():
        raise UserAgentListError(f"{where}: 'pattern' must be a non-blank string")
    try:
        re.compile(js_pattern(pattern), PATTERN_FLAGS)
    except re.error as exc:
        raise UserAgentListError(f"{where}: the pattern {pattern!r} does not compile: {exc}") from exc
    texts: dict[str, str | None] = {}
    for key in ("category", "description", "svg", "comments"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise UserAgentListError(f"{where}: {key!r} must be a string")
        texts[key] = value
    arrays: dict[str, tuple[str, ...]] = {}
    for key in ("urls", "examples"):
        value = raw.get(key, [])
        if not _strings(value):
            raise UserAgentListError(f"{where}: {key!r} must be an array of strings")
        arrays[key] = tuple(value)
    return Entry(
        name=name,
        pattern=pattern,
        category=texts["category"],
        description=texts["description"],
        svg=texts["svg"],
        comments=texts["comments"],
        urls=arrays["urls"],
        examples=arrays["examples"],
        extra=MappingProxyType({key: value for key, value in raw.items() if key not in _ENTRY_FIELDS}),
    )


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _re2_options(*, case_sensitive: bool = True) -> Any:
    options = re2.Options()
    options.max_mem = RE2_MAX_MEM
    options.log_errors = False
    options.case_sensitive = case_sensitive
    return options


class PatternSet:
    """The first pattern of an ordered list that matches a text, found in one scan.

    The patterns go into RE2 sets, which report every pattern that matches; the first in list order is the
    lowest index reported. Patterns anchored at the start (``^…`` without a top-level ``|``) go into a set
    matched at the start only, the others into a set searched throughout: a searching DFA builds its states
    as new texts come, and fewer patterns there make far fewer states. Each set has a sentinel that matches
    every text, so a report without it means the set could not answer (RE2 reports nothing when its DFA
    runs out of memory): that text, like a string RE2 cannot take (not UTF-8), gets the plain loop.
    Patterns RE2 rejects are searched with ``re`` beside the sets.
    """

    def __init__(self, patterns: Sequence[str], *, flags: int = PATTERN_FLAGS) -> None:
        self._patterns = [re.compile(pattern, flags) for pattern in patterns]
        self._none = len(patterns)  # the sentinels' index: after every pattern
        options = _re2_options(case_sensitive=not flags & re.IGNORECASE)
        # (set, its sentinel, set index -> list index); "" matches at the start of any text, "$" at its end.
        anchored: tuple[Any, str, list[int]] = (re2.Set.MatchSet(options), "", [])
        searched: tuple[Any, str, list[int]] = (re2.Set.SearchSet(options), "$", [])
        self._outside: list[tuple[int, re.Pattern[str]]] = []  # patterns RE2 rejects, in list order
        for index, pattern in enumerate(patterns):
            target, _, indices = anchored if is_anchored(pattern) else searched
            try:
                target.Add(pattern)
            except re2.error:
                self._outside.append((index, self._patterns[index]))
            else:
                indices.append(index)
        self._sets: list[tuple[Any, list[int], int]] = []  # (set, set index -> list index, sentinel's index)
        for target, sentinel, indices in (anchored, searched):
            if indices:
                indices.append(self._none)
                self._sets.append((target, indices, target.Add(sentinel)))
                target.Compile()
        self.fallbacks = 0  # texts that took the plain loop

    def __len__(self) -> int:
        return len(self._patterns)

    @property
    def outside(self) -> list[str]:
        """The patterns RE2 rejected, searched with ``re`` on every text."""
        return [compiled.pattern for _, compiled in self._outside]

    def first(self, text: str, data: bytes | None = None) -> int:
        """The index of the first pattern that matches ``text`` (``data``: its UTF-8, if at hand), or -1."""
        if data is None:
            try:
                data = text.encode()
            except UnicodeEncodeError:
                self.fallbacks += 1
                return self.first_plain(text)
        found = self._none
        for patterns, index_of, sentinel in self._sets:
            hits = patterns.Match(data)
            if not hits or sentinel not in hits:
                self.fallbacks += 1
                return self.first_plain(text)
            index = index_of[min(hits)]  # set indices follow list order; the sentinel is last
            if index < found:
                found = index
        for index, compiled in self._outside:
            if index > found:
                break
            if compiled.search(text):
                return index
        return found if found < self._none else -1

    def first_plain(self, text: str) -> int:
        """The same answer by the plain loop: the patterns searched in order until one matches."""
        return next((index for index, compiled in enumerate(self._patterns) if compiled.search(text)), -1)


def js_pattern(pattern: str) -> str:
    """A list's (JavaScript) pattern for ``re`` and RE2: ``\\s``, ``\\S`` and ``.`` spelled out as JavaScript
    reads them (``re`` and RE2 take ``\\s`` as ASCII white space, and their ``.`` matches U+2028)."""
    if "\\s" not in pattern and "\\S" not in pattern and "." not in pattern:
        return pattern
    out: list[str] = []
    position, length, in_class = 0, len(pattern), False
    while position < length:
        char = pattern[position]
        if char == "\\" and position + 1 < length:
            escaped = pattern[position + 1]
            if escaped == "s":
                out.append(_JS_SPACE if in_class else f"[{_JS_SPACE}]")
            elif escaped == "S" and not in_class:  # (inside a class, \\S stays ASCII's: no list has one)
                out.append(f"[^{_JS_SPACE}]")
            else:
                out.append(pattern[position : position + 2])
            position += 2
            continue
        if char == "[" and not in_class:
            in_class = True
            start = position + 1
            if start < length and pattern[start] == "^":
                start += 1
            if start < length and pattern[start] == "]":  # a leading "]" is a literal
                start += 1
            out.append(pattern[position:start])
            position = start
            continue
        if char == "]" and in_class:
            in_class = False
        out.append(_JS_DOT if char == "." and not in_class else char)
        position += 1
    return "".join(out)


def is_anchored(pattern: str) -> bool:
    """Whether a pattern can only match at the start of a text: it starts with ``^`` and has no ``|``
    outside parentheses (escapes and character classes read as ``re`` and RE2 read them)."""
    if not pattern.startswith("^"):
        return False
    depth, position, length = 0, 1, len(pattern)
    while position < length:
        char = pattern[position]
        if char == "\\":
            position += 1
        elif char == "[":
            position += 1
            if position < length and pattern[position] == "^":
                position += 1
            if position < length and pattern[position] == "]":  # a leading "]" is a literal
                position += 1
            while position < length and pattern[position] != "]":
                position += 2 if pattern[position] == "\\" else 1
            if position >= length:
                return False
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return False
        elif char == "|" and depth == 0:
            return False
        position += 1
    return depth == 0


class CrawlerCheck:
    """crawlerdetect's verdict, computed from its own data the way ``CrawlerDetect.is_crawler`` does: the
    trimmed user agent, its exclusions (browser tokens such as ``Mozilla/5.0``) removed, searched for any
    crawler pattern, ignoring case. The same answer through RE2: ~5-10 µs instead of ~500 µs."""

    def __init__(self, crawlers: Sequence[str], exclusions: Sequence[str]) -> None:
        pattern = f"({'|'.join(exclusions)})"
        self._exclusions_plain = re.compile(pattern, re.IGNORECASE)
        try:
            self._exclusions: Any = re2.compile(pattern, options=_re2_options(case_sensitive=False))
        except re2.error:
            self._exclusions = None
        self._crawlers = PatternSet(crawlers, flags=re.IGNORECASE)

    def __call__(self, user_agent: str) -> bool:
        agent = user_agent.strip()
        if not agent:
            return False
        agent = self._without_exclusions(agent)
        return bool(agent) and self._crawlers.first(agent) >= 0

    def _without_exclusions(self, agent: str) -> str:
        if self._exclusions is None:
            return self._exclusions_plain.sub("", agent)
        try:
            data = agent.encode()
        except UnicodeEncodeError:
            return self._exclusions_plain.sub("", agent)
        pieces: list[bytes] = []
        end = 0
        for match in self._exclusions.finditer(data):
            start, stop = match.span()
            pieces.append(data[end:start])
            end = stop
        if not pieces:
            return agent
        pieces.append(data[end:])
        return b"".join(pieces).decode()


@functools.cache
def crawlerdetect_check() -> Callable[[str], bool]:
    """Rule 1's crawlerdetect part, built once per process from the installed crawlerdetect's data."""
    try:
        from crawlerdetect.providers.crawlers import data as crawlers
        from crawlerdetect.providers.exclusions import data as exclusions
    except ImportError:  # a crawlerdetect that keeps its data elsewhere: its own (slower) check
        from crawlerdetect import CrawlerDetect

        detector = CrawlerDetect()
        return lambda user_agent: bool(detector.is_crawler(user_agent))
    return CrawlerCheck(list(crawlers), list(exclusions))


@functools.cache
def _ua_parser() -> ua_parser.Resolver:
    # The fastest backend installed (ua-parser-rs, else RE2, else pure Python), without its own cache.
    return ua_parser.BestAvailableResolver(ua_parser.load_lazy_builtins())


def _utf8(text: str) -> bytes | None:
    try:
        return text.encode()
    except UnicodeEncodeError:
        return None


def _version(*parts: str | None) -> str | None:
    known: list[str] = []
    for part in parts:
        if part is None:
            break
        known.append(part)
    return ".".join(known) or None


def _same_browser(listed: str, family: str) -> bool:
    """Whether ua-parser's family is the browser a list entry names (its version then belongs to it)."""
    a, b = (re.sub(r"[^a-z0-9]", "", name.lower()) for name in (listed, family))
    a = {"internetexplorer": "ie"}.get(a, a)
    return bool(a and b) and (a in b or b in a)


class Classifier:
    """The lists compiled once. ``classify`` answers from an LRU per distinct (user agent, referrer), and
    from one per user agent beneath it, so a browser seen with a new Referer is not classified again."""

    def __init__(
        self,
        lists: Mapping[str, PatternList],
        *,
        cache_size: int = CACHE_SIZE,
        crawlers: Callable[[str], bool] | None = None,
    ) -> None:
        self.lists = dict(lists)
        # One set per list, so that a DFA state stands for fewer combinations of matched patterns.
        self.sets = {
            name: PatternSet([js_pattern(entry.pattern) for entry in self.lists[name].entries]) for name in LIST_NAMES
        }
        self._entities = [(kind, self.lists[name].entries, self.sets[name]) for name, kind in ENTITY_LISTS]
        self._devices = self.lists["devices"].entries
        self._referrers = self.lists["referrers"].entries
        self._is_crawler = crawlers if crawlers is not None else crawlerdetect_check()
        self._parser = _ua_parser()  # built here (~0.15 s, once per process), not on a first request
        self._cached = functools.lru_cache(maxsize=cache_size)(self._classify)
        self._agent = functools.lru_cache(maxsize=cache_size)(self._classify_agent)
        self._referrer = functools.lru_cache(maxsize=cache_size)(self._match_referrer)

    @classmethod
    def from_folder(cls, folder: Path | str = DATA_DIR, *, cache_size: int = CACHE_SIZE) -> Classifier:
        """Compile the lists of ``folder`` (checked by :func:`read_lists`)."""
        return cls(read_lists(folder), cache_size=cache_size)

    def classify(self, user_agent: str | None, referrer: str | None = None) -> UserAgentInfo:
        """Classify a request's ``User-Agent`` (and ``Referer``, which only a browser's result uses)."""
        return self._cached(user_agent, referrer or None)

    def classify_uncached(self, user_agent: str | None, referrer: str | None = None) -> UserAgentInfo:
        """The same answer, computed afresh (for benchmarks and checks)."""
        info = self._classify_agent(user_agent)
        if not referrer or info.type != "browser":
            return info
        return self._with_referrer(info, self._match_referrer(referrer))

    def cache_clear(self) -> None:
        for cache in (self._cached, self._agent, self._referrer):
            cache.cache_clear()

    def cache_info(self) -> functools._CacheInfo:
        return self._cached.cache_info()

    def device_of(self, user_agent: str) -> Entry | None:
        """The first ``devices`` entry that matches a user agent, whatever its type (the optional breakdown)."""
        index = self.sets["devices"].first(user_agent.translate(_NEWLINES))
        return self._devices[index] if index >= 0 else None

    def referrer_of(self, referrer: str) -> Entry | None:
        """The first ``referrers`` entry that matches a Referer header."""
        return self._match_referrer(referrer)

    def _classify(self, user_agent: str | None, referrer: str | None) -> UserAgentInfo:
        info = self._agent(user_agent)
        if referrer is None or info.type != "browser":
            return info
        return self._with_referrer(info, self._referrer(referrer))

    @staticmethod
    def _with_referrer(info: UserAgentInfo, entry: Entry | None) -> UserAgentInfo:
        if entry is None:
            return info
        return dataclasses.replace(info, referrer=entry.name, referrer_category=entry.category, referrer_entry=entry)

    def _match_referrer(self, referrer: str) -> Entry | None:
        index = self.sets["referrers"].first(referrer.translate(_NEWLINES))
        return self._referrers[index] if index >= 0 else None

    def _classify_agent(self, user_agent: str | None) -> UserAgentInfo:
        if not user_agent:
            return NO_USER_AGENT
        text = user_agent.translate(_NEWLINES) if "\n" in user_agent or "\r" in user_agent else user_agent
        if not text.strip():
            return NO_USER_AGENT
        data = _utf8(text)
        kind: AgentType | None = None
        entry: Entry | None = None
        for list_kind, entries, patterns in self._entities:
            index = patterns.first(text, data)
            if index >= 0:
                kind, entry = list_kind, entries[index]
                break
        if kind == "bot" and entry is not None:
            return UserAgentInfo(
                is_bot=True, type="bot", name=entry.name, category=entry.category, bot_source="opawg", entry=entry
            )
        device = self.sets["devices"].first(text, data)
        device_entry = self._devices[device] if device >= 0 else None
        fields: dict[str, Any] = {
            "type": kind,
            "name": entry.name if entry else None,
            "category": entry.category if entry else None,
            "device": device_entry.name if device_entry else None,
            "device_category": device_entry.category if device_entry else None,
            "entry": entry,
            "device_entry": device_entry,
        }
        if entry is None and self._is_crawler(text):
            return UserAgentInfo(is_bot=True, bot_source="crawlerdetect", **fields)
        wants_browser = kind is None or kind == "browser"
        domains = Domain.OS | Domain.USER_AGENT if wants_browser else Domain.OS
        try:
            parsed = self._parser(text, domains)
        except UnicodeEncodeError:  # not UTF-8 (a lone surrogate), which ua-parser's backends cannot read
            parsed = self._parser(text.encode("utf-8", "replace").decode(), domains)
        if parsed.os is not None and parsed.os.family != "Other":
            fields["os"] = parsed.os.family
            fields["os_version"] = _version(parsed.os.major, parsed.os.minor, parsed.os.patch, parsed.os.patch_minor)
        agent = parsed.user_agent
        if wants_browser and agent is not None and agent.family != "Other":
            version = _version(agent.major, agent.minor, agent.patch, agent.patch_minor)
            if entry is None:
                fields["browser"], fields["browser_version"] = agent.family, version
            elif _same_browser(entry.name, agent.family):
                fields["browser_version"] = version
        if kind == "browser" and entry is not None:
            fields["browser"] = entry.name
        return UserAgentInfo(is_bot=False, **fields)


INSTALLED_FOLDER: Final = "useragents"  # under the data directory: lists put there by ``useragents install``
# The file names ``useragents install`` copies besides the lists.
EXTRA_FILES: Final = ("LICENSE", "LICENSE.md", "LICENSE.txt", "README", "README.md", "SOURCES", "SOURCES.md",
                      "SOURCES.txt", "patterns.schema.json")  # fmt: skip

_default: Classifier | None = None
_default_lock = threading.Lock()
_watched: Path | None = None  # the installed folder the process's classifier follows
_stamp: tuple[int, int] | None = None  # that folder's (inode, mtime) when it was last read; None: absent
_bundled = True  # whether the process's classifier is of the bundled lists


def load(folder: Path | str) -> Classifier:
    """A classifier of the lists in ``folder`` (e.g. newer OPAWG lists); :class:`UserAgentListError` when a
    file is missing, malformed, or has a pattern that does not compile."""
    return Classifier.from_folder(folder)


def installed_folder(data_dir: Path | None = None) -> Path | None:
    """``<data_dir>/useragents``, where ``castmetrics useragents install`` puts newer lists (the data
    directory of the settings when not given; None when the settings cannot be read)."""
    if data_dir is None:
        try:
            from castmetrics.config import get_settings

            data_dir = get_settings().data_dir
        except Exception as exc:  # unreadable settings: the bundled lists
            log.warning("useragents.settings_unreadable", error=str(exc))
            return None
    return data_dir / INSTALLED_FOLDER


def folder_stamp(folder: Path) -> tuple[int, int] | None:
    """What changes when the folder is replaced or written to: (inode, mtime); None when it is absent."""
    try:
        status = folder.stat()
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns


def _load_installed(folder: Path | None) -> Classifier | None:
    """The classifier of ``folder``'s lists; None when it is absent, or (with a warning) does not load."""
    if folder is None or folder_stamp(folder) is None:
        return None
    try:
        classifier = load(folder)
    except UserAgentListError as exc:
        log.warning("useragents.installed_invalid", folder=str(folder), error=str(exc))
        return None
    log.info("useragents.installed_loaded", folder=str(folder))
    return classifier


def default() -> Classifier:
    """The process's classifier, compiled on first use: of the installed lists (``<data_dir>/useragents``)
    when there are any and they load, else of the bundled ones."""
    global _default, _watched, _stamp, _bundled
    classifier = _default
    if classifier is None:
        with _default_lock:
            classifier = _default
            if classifier is None:
                folder = installed_folder()
                stamp = folder_stamp(folder) if folder is not None else None
                installed = _load_installed(folder)
                classifier = installed if installed is not None else load(DATA_DIR)
                _default, _watched, _stamp, _bundled = classifier, folder, stamp, installed is None
    return classifier


def maybe_reload(folder: Path | str) -> bool:
    """Follow the installed lists in ``folder``: when it was installed, replaced or removed since the
    process's classifier was made (or the classifier follows another folder), compile what it holds now (the
    bundled lists when it is gone) and swap it in; answers whether it did. Otherwise it costs one ``stat``.
    Lists that do not load leave the current classifier in place (with a warning), until the folder changes
    again. Compiling takes a fraction of a second: call it off the event loop."""
    global _default, _watched, _stamp, _bundled
    path = Path(folder)
    stamp = folder_stamp(path)
    if _default is not None and path == _watched and stamp == _stamp:
        return False
    current, bundled = _default, _bundled
    installed = _load_installed(path) if stamp is not None else None
    if installed is not None:
        classifier, bundled = installed, False
    elif current is not None and (bundled or stamp is not None):
        classifier = current  # already the bundled lists, or the new ones do not load: keep what works
    else:
        classifier, bundled = load(DATA_DIR), True
    with _default_lock:
        _default, _watched, _stamp, _bundled = classifier, path, stamp, bundled
    return classifier is not current


def reload(folder: Path | str | None = None) -> Classifier:
    """Compile the lists of ``folder`` (the bundled ones by default) and make them the process's
    classifier in one step; on an error the current classifier stays."""
    global _default, _watched, _stamp, _bundled
    classifier = load(folder if folder is not None else DATA_DIR)
    with _default_lock:
        _default, _bundled = classifier, folder is None
        _watched = Path(folder) if folder is not None else None
        _stamp = folder_stamp(_watched) if _watched is not None else None
    return classifier


def classify(user_agent: str | None, referrer: str | None = None) -> UserAgentInfo:
    """Classify with the process's classifier (see :meth:`Classifier.classify`)."""
    return default().classify(user_agent, referrer)
