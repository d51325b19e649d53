"""User-agent classification (docs/measurement.md, rule 1 and "Who the client is"): every example of the
OPAWG lists classifies to its own entry, the bot rule, what ua-parser adds, loading and reloading lists."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from crawlerdetect import CrawlerDetect

from castmetrics.measurement import useragents
from castmetrics.measurement.useragents import Classifier, Entry, UserAgentListError

CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
APPLE_PODCASTS = "Podcasts/1555.2.1 CFNetwork/1404.0.5 Darwin/22.3.0"
# A crawler the OPAWG lists do not name, which crawlerdetect does.
BLEXBOT = "Mozilla/5.0 (compatible; BLEXBot/1.0; +http://webmeup-crawler.com/)"
# Upstream checks devices and referrers examples only against their own pattern, not in file order; in
# file order this one is taken by an earlier entry ("CFNetwork" is an Apple iPhone pattern). Kept here so
# that a fixed list makes this test fail, and the exception is dropped.
DEVICE_ORDER_EXCEPTIONS = {"Watch/1140 CFNetwork/3860.200.71 Darwin/25.1.0": ("Apple Watch", "Apple iPhone")}

ENTITY_TYPES = dict(useragents.ENTITY_LISTS)


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.from_folder()


@pytest.fixture
def lists_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "lists"
    shutil.copytree(useragents.DATA_DIR, folder)
    return folder


@pytest.fixture
def restore_default() -> Iterator[None]:
    yield
    useragents.reload()


def edit_list(folder: Path, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = folder / f"{name}.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    change(document)
    path.write_text(json.dumps(document), encoding="utf-8")


def all_examples(classifier: Classifier) -> list[str]:
    return [example for name in useragents.LIST_NAMES for e in classifier.lists[name].entries for example in e.examples]


@pytest.mark.parametrize("list_name", ["bots", "apps", "libraries", "browsers"])
def test_every_example_classifies_to_its_own_entry(classifier: Classifier, list_name: str) -> None:
    failures, count = [], 0
    for entry in classifier.lists[list_name].entries:
        for example in entry.examples:
            count += 1
            info = classifier.classify_uncached(example)
            expected_bot = list_name == "bots"
            if (info.type, info.name, info.is_bot) != (ENTITY_TYPES[list_name], entry.name, expected_bot):
                failures.append(f"{entry.name!r}: {example!r} -> {info.type} {info.name!r} bot={info.is_bot}")
    assert count > 0
    assert not failures, f"{len(failures)} of {count} {list_name} examples:\n" + "\n".join(failures)


def test_every_devices_example_names_its_own_device(classifier: Classifier) -> None:
    failures, count = [], 0
    for entry in classifier.lists["devices"].entries:
        for example in entry.examples:
            count += 1
            found = classifier.device_of(example)
            expected = entry.name
            if example in DEVICE_ORDER_EXCEPTIONS:
                own, expected = DEVICE_ORDER_EXCEPTIONS[example]
                assert own == entry.name and re.search(entry.pattern, example, useragents.PATTERN_FLAGS)
            if found is None or found.name != expected:
                failures.append(f"{entry.name!r}: {example!r} -> {found.name if found else None!r}")
    assert count > 0
    assert not failures, f"{len(failures)} of {count} devices examples:\n" + "\n".join(failures)


def test_every_referrers_example_names_its_own_web_app(classifier: Classifier) -> None:
    failures, count = [], 0
    for entry in classifier.lists["referrers"].entries:
        for example in entry.examples:
            count += 1
            info = classifier.classify_uncached(CHROME_MAC, example)
            if (info.type, info.referrer, info.referrer_category) != ("browser", entry.name, entry.category):
                failures.append(f"{entry.name!r}: {example!r} -> {info.referrer!r}")
    assert count > 0
    assert not failures, f"{len(failures)} of {count} referrers examples:\n" + "\n".join(failures)


def test_the_set_answers_as_the_plain_loop_does(classifier: Classifier) -> None:
    texts = all_examples(classifier)
    texts += [text.replace("1", "7").upper() for text in texts] + [text[: len(text) // 2] for text in texts]
    for name, patterns in classifier.sets.items():
        differences = [text for text in texts if patterns.first(text) != patterns.first_plain(text)]
        assert not differences, name
        assert patterns.fallbacks == 0 and patterns.outside == [], name


def test_a_set_that_cannot_answer_gives_way_to_the_plain_loop() -> None:
    class Silent:  # what RE2 answers when its DFA runs out of memory: nothing, not even the sentinel
        def Match(self, data: bytes) -> None:  # RE2's name
            return None

    patterns = useragents.PatternSet(["^b", "a", "^a"])
    assert patterns.first("ab") == 1
    patterns._sets = [(Silent(), indices, sentinel) for _, indices, sentinel in patterns._sets]
    assert patterns.first("ab") == 1 and patterns.first("ba") == 0 and patterns.first("c") == -1
    assert patterns.fallbacks == 3


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("^Times(%20|\\s)Radio", ["Times Radio", "Times\u00a0Radio", "Times\u3000Radio"], ["TimesXRadio"]),
        ("^a\\S", ["ab", "a."], ["a\u00a0", "a "]),
        ("^a.b", ["a-b", "a\u00e9b"], ["a\u2028b", "a\u2029b", "ab"]),
        ("^a[.\\s]b", ["a.b", "a\u00a0b"], ["a-b"]),
        ("^x[^\\s]", ["xy"], ["x\u00a0"]),
    ],
)
def test_patterns_read_as_javascript_reads_them(pattern: str, matches: list[str], misses: list[str]) -> None:
    patterns = useragents.PatternSet([useragents.js_pattern(pattern)])
    for text in matches:
        assert patterns.first(text) == patterns.first_plain(text) == 0, text
    for text in misses:
        assert patterns.first(text) == patterns.first_plain(text) == -1, text


@pytest.mark.parametrize(
    ("pattern", "anchored"),
    [
        ("^AppleCoreMedia(/|$)", True),
        ("^Podcasts/|^Balados/", False),
        ("^(a|b)c", True),
        ("^a\\|b", True),
        ("^[|(]x", True),
        ("^[]|]x", True),
        ("^(a)|b", False),
        ("AhrefsBot/", False),
        ("^a)|(b", False),
        ("^[a", False),
    ],
)
def test_only_patterns_anchored_at_the_start_go_to_the_anchored_set(pattern: str, anchored: bool) -> None:
    assert useragents.is_anchored(pattern) is anchored


def test_crawler_check_answers_as_crawlerdetect_does(classifier: Classifier) -> None:
    check = useragents.crawlerdetect_check()
    assert isinstance(check, useragents.CrawlerCheck)
    detector = CrawlerDetect()
    texts = all_examples(classifier) + [BLEXBOT, "", "  ", "Mozilla/5.0", "Mozilla/5.0 (compatible; MSIE 10.0)"]
    differences = [text for text in texts if check(text) != detector.is_crawler(text)]
    assert not differences


def test_applecoremedia_is_a_counted_library(classifier: Classifier) -> None:
    info = classifier.classify("AppleCoreMedia/1.0.0.19E239 (iPhone; U; CPU OS 15_4 like Mac OS X; sv_se)")
    assert (info.type, info.name, info.is_bot) == ("library", "AppleCoreMedia", False)
    assert (info.device, info.device_category) == ("Apple iPhone", "mobile")
    assert (info.os, info.os_version) == ("iOS", "15.4")
    assert info.browser is None  # the lists named the client


def test_an_app_gets_its_entry_device_and_os(classifier: Classifier) -> None:
    info = classifier.classify(APPLE_PODCASTS, "https://open.spotify.com/episode/1")
    assert (info.type, info.name, info.app_name, info.is_bot) == ("app", "Apple Podcasts", "Apple Podcasts", False)
    assert (info.device, info.os, info.os_version) == ("Apple iPhone", "iOS", "16.3")
    assert info.referrer is None  # the Referer is only asked about for browsers
    assert info.entry is not None and info.entry.examples and info.entry.description == "The Apple Podcasts app."


def test_a_browser_with_a_web_player_referer_names_that_web_app(classifier: Classifier) -> None:
    info = classifier.classify(CHROME_MAC, "https://open.spotify.com/episode/4rOoJ6Egrf8K2IrywzwOMk")
    assert (info.type, info.name, info.is_bot) == ("browser", "Chrome", False)
    assert (info.referrer, info.referrer_category, info.app_name) == ("Spotify", "app", "Spotify")
    assert (info.browser, info.browser_version) == ("Chrome", "120.0.0.0")
    assert (info.os, info.os_version, info.device_category) == ("Mac OS X", "10.15.7", "computer")
    plain = classifier.classify(CHROME_MAC, "https://example.com/")
    assert (plain.referrer, plain.app_name) == (None, "Chrome")
    assert classifier.classify(CHROME_MAC, "") == classifier.classify(CHROME_MAC)


def test_an_opawg_bot_is_a_bot(classifier: Classifier) -> None:
    info = classifier.classify("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)")
    assert (info.type, info.name, info.is_bot, info.bot_source) == ("bot", "AhrefsBot", True, "opawg")
    assert info.device is None and info.os is None


def test_a_crawler_opawg_does_not_list_is_a_bot_by_crawlerdetect(classifier: Classifier) -> None:
    assert CrawlerDetect().is_crawler(BLEXBOT)
    info = classifier.classify(BLEXBOT)
    assert (info.type, info.name, info.is_bot, info.bot_source) == (None, None, True, "crawlerdetect")


@pytest.mark.parametrize(
    ("user_agent", "name"),
    [("VLC/3.0.8 LibVLC/3.0.8", "VLC media player"), ("Yandex.Music/2019-11-01.trunk.5885661", "Yandex Music")],
)
def test_an_app_crawlerdetect_would_flag_stays_a_counted_app(
    classifier: Classifier, user_agent: str, name: str
) -> None:
    assert CrawlerDetect().is_crawler(user_agent)
    info = classifier.classify(user_agent)
    assert (info.type, info.name, info.is_bot) == ("app", name, False)


def test_a_library_the_lists_mark_as_bot_is_still_counted(classifier: Classifier) -> None:
    # Rule 1: only the bots list makes a bot; libraries are counted. The entry's category is carried.
    info = classifier.classify("okhttp/3.11.0")
    assert (info.type, info.name, info.category, info.is_bot) == ("library", "okhttp", "bot", False)


@pytest.mark.parametrize("user_agent", [None, "", " ", "\t  ", "\r\n", "\n \n"])
def test_a_missing_or_blank_user_agent_is_a_bot(classifier: Classifier, user_agent: str | None) -> None:
    info = classifier.classify(user_agent)
    assert (info.is_bot, info.bot_source, info.type) == (True, "no-user-agent", None)


def test_an_unknown_user_agent_is_counted_without_a_type(classifier: Classifier) -> None:
    info = classifier.classify("MyCustomPlayer/1.0")
    assert (info.is_bot, info.type, info.name, info.bot_source) == (False, None, None, None)


def test_newlines_are_removed_and_patterns_are_case_sensitive(classifier: Classifier) -> None:
    assert classifier.classify("AppleCore\nMedia/1.0.0.19E239\r").name == "AppleCoreMedia"
    assert classifier.classify("applecoremedia/1.0.0.19E239").name != "AppleCoreMedia"
    # A header read as Latin-1 may hold a no-break space, which JavaScript's \s matches.
    info = classifier.classify("Times\u00a0Radio/2.1.0 (Linux; Android 14) ExoPlayerLib/2.19.1")
    assert info.name == "Times Radio app"


def test_a_string_re2_cannot_take_gets_the_same_answer(classifier: Classifier) -> None:
    before = classifier.sets["apps"].fallbacks
    info = classifier.classify_uncached(APPLE_PODCASTS + " \udc80")  # a lone surrogate is not UTF-8
    assert (info.type, info.name, info.device) == ("app", "Apple Podcasts", "Apple iPhone")
    assert classifier.sets["apps"].fallbacks == before + 1


def test_a_pattern_re2_rejects_is_searched_in_its_place(classifier: Classifier) -> None:
    lookahead = Entry(name="Not a search", pattern="^Podcasts/(?!9)")
    apps = classifier.lists["apps"]
    lists = dict(classifier.lists, apps=dataclasses.replace(apps, entries=(lookahead, *apps.entries)))
    custom = Classifier(lists)
    assert custom.sets["apps"].outside == ["^Podcasts/(?!9)"]
    assert custom.classify(APPLE_PODCASTS).name == "Not a search"
    assert custom.classify("Podcasts/9 CFNetwork/1404.0.5 Darwin/22.3.0").name == "Apple Podcasts"


def test_lookups_are_cached_per_user_agent_and_referrer(classifier: Classifier) -> None:
    classifier.cache_clear()
    first = classifier.classify(APPLE_PODCASTS)
    assert classifier.classify(APPLE_PODCASTS) is first
    assert classifier.cache_info().hits == 1
    assert useragents.classify(APPLE_PODCASTS, "") == first


def test_loading_a_folder_with_a_broken_pattern_says_which(lists_folder: Path) -> None:
    def break_pattern(document: dict[str, Any]) -> None:
        document["entries"][3]["pattern"] = "^Broken/(unclosed"

    edit_list(lists_folder, "apps", break_pattern)
    name = json.loads((lists_folder / "apps.json").read_text())["entries"][3]["name"]
    with pytest.raises(UserAgentListError) as error:
        useragents.load(lists_folder)
    message = str(error.value)
    assert "apps.json: entry 3" in message and repr(name) in message
    assert "'^Broken/(unclosed' does not compile" in message


def test_loading_a_folder_with_a_missing_or_malformed_file_says_which(lists_folder: Path) -> None:
    (lists_folder / "referrers.json").unlink()
    with pytest.raises(UserAgentListError, match=r"missing referrers\.json"):
        useragents.load(lists_folder)
    shutil.copy(useragents.DATA_DIR / "referrers.json", lists_folder)
    (lists_folder / "devices.json").write_text('{"entries": [', encoding="utf-8")
    with pytest.raises(UserAgentListError, match=r"devices\.json: not a readable JSON document"):
        useragents.load(lists_folder)
    (lists_folder / "devices.json").write_text('{"entries": [{"name": "X"}]}', encoding="utf-8")
    with pytest.raises(UserAgentListError, match=r"devices\.json: entry 0 \('X'\): 'pattern' must be"):
        useragents.load(lists_folder)


@pytest.mark.usefixtures("restore_default")
def test_reload_swaps_the_process_classifier(lists_folder: Path) -> None:
    def add_player(document: dict[str, Any]) -> None:
        document["entries"].insert(0, {"name": "My Custom Player", "pattern": "^MyCustomPlayer/", "svg": "mcp.svg"})

    bundled = useragents.default()
    assert useragents.default() is bundled
    assert useragents.classify("MyCustomPlayer/1.0").type is None
    edit_list(lists_folder, "apps", add_player)
    newer = useragents.reload(lists_folder)
    assert useragents.default() is newer is not bundled
    info = useragents.classify("MyCustomPlayer/1.0")
    assert (info.type, info.name) == ("app", "My Custom Player")
    assert info.entry is not None and info.entry.svg == "mcp.svg"

    (lists_folder / "bots.json").write_text("not json", encoding="utf-8")
    with pytest.raises(UserAgentListError):
        useragents.reload(lists_folder)
    assert useragents.default() is newer  # a failed reload leaves the current classifier in place
