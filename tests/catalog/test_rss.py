"""RSS parsing: every real feed in tests/fixtures/feeds, plus the edge cases those feeds do not cover."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pytest

from castmetrics.catalog.rss import ParsedFeed, parse_date, parse_duration, parse_feed

FEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"


@dataclass(frozen=True)
class FirstEpisode:
    title: str
    guid: str
    duration_seconds: int | None
    published_at: datetime | None
    audio_url: str


@dataclass(frozen=True)
class FeedCase:
    file: str
    edge_case: str
    episodes: int
    first: FirstEpisode


def _utc(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


CASES = [
    FeedCase(
        "apple-example-all-about-everything.xml",
        "apple-spec-sample-mmss-m4a",
        3,
        FirstEpisode(
            "Shake Shake Shake Your Spices",
            "http://example.com/podcasts/archive/aae20140615.m4a",
            424,  # 7:04
            _utc(2014, 6, 15, 19, 0, 0),
            "http://example.com/podcasts/everything/AllAboutEverythingEpisode3.m4a",
        ),
    ),
    FeedCase(
        "feedjira-apple-example-single-quoted.xml",
        "single-quoted-attributes-newline-before-declaration-unbound-content-prefix",
        3,
        FirstEpisode(
            "Shake Shake Shake Your Spices",
            "http://example.com/podcasts/archive/aae20050615.m4a",
            424,
            _utc(2005, 6, 15, 19, 0, 0),
            "http://example.com/podcasts/everything/AllAboutEverythingEpisode3.m4a",
        ),
    ),
    FeedCase(
        "feedjira-cre.xml",
        "feedburner-podlove-german-audio-mp4",
        30,
        FirstEpisode(
            "CRE207 Planetarien",
            "podlove-2015-02-13t20:15:53+00:00-28d673725224ab3",
            5789,  # 01:36:29
            _utc(2015, 2, 13, 22, 38, 52),
            "http://feedproxy.google.com/~r/cre-podcast/~5/cM067ax_iis/cre207-planetarien.m4a",
        ),
    ),
    FeedCase(
        "feedjira-night-vale-feedburner.xml",
        "feedburner-minus-zero-zone",
        3,
        FirstEpisode(
            "Patreon Preview: Behind the Scenes (September 2023)",
            "prx_126_e3dafc45-a202-42d0-a55b-216e733a2d7a",
            297,  # 04:57
            _utc(2023, 9, 22, 16, 30, 15),  # "-0000"
            "https://www.podtrac.com/pts/redirect.mp3/dovetail.prxu.org/_/126/"
            "e3dafc45-a202-42d0-a55b-216e733a2d7a/2023_09_17_BTS_Episode_EXCERPT_v2.mp3",
        ),
    ),
    FeedCase(
        "npp-coding-blocks.xml",
        "libsyn-cdata-guid-episode-and-season-numbers",
        83,
        FirstEpisode(
            "Search Driven Apps",
            "c964777d603943dab53f36ccc17a742e",
            8318,  # 02:18:38
            _utc(2018, 6, 11, 1, 20, 48),
            "https://traffic.libsyn.com/secure/codingblocks/coding-blocks-episode-83.mp3?dest-id=171666",
        ),
    ),
    FeedCase(
        "npp-design-details.xml",
        "simplecast-negative-offset-explicit-yes",
        102,
        FirstEpisode(
            "100: Goldilocks Fidelity (feat. Daniel Burka)",
            "ea43eba3-3a9e-4593-a69b-1a78465d9e76",
            3932,  # 01:05:32
            _utc(2016, 2, 1, 13, 0, 0),  # 05:00 -0800
            "https://audio.simplecast.com/25164.mp3",
        ),
    ),
    FeedCase(
        "npp-javascript-air.xml",
        "podbean-typographic-quotes",
        8,
        FirstEpisode(
            "007 jsAir - Chakra, Microsoft\u2019s Open Source JavaScript Engine with Ed Maurer, Gaurav Seth, "
            "and Steve Lucco",
            "http://audio.javascriptair.com/e/007-jsair-chakra-microsofts-open-source-javascript-engine-with-ed-"
            "maurer-gaurav-seth-and-steve-lucco/",
            3550,  # 00:59:10
            _utc(2016, 1, 28, 0, 21, 35),
            "http://javascriptair.podbean.com/mf/feed/dk3eif/"
            "JavaScriptAirEpisode007-ChakraMicrosoftsOpenSourceJavaScriptEngine.mp3",
        ),
    ),
    FeedCase(
        "npp-libsyn-frank-and-erik.xml",
        "libsyn-cdata-everywhere",
        6,
        FirstEpisode(
            "Episode 128",
            "1bdba530eb7cd0fb6241a945fda4db95",
            5702,  # 01:35:02
            _utc(2017, 4, 21, 3, 12, 13),
            "http://traffic.libsyn.com/frankanderik/Internet_Famous_Ep128.mp3?dest-id=30697",
        ),
    ),
    FeedCase(
        "npp-neo4j.xml",
        "soundcloud-podtrac-empty-enclosure-length",
        54,
        FirstEpisode(
            "Podcast Interview With Stuart Begg And Matt Byrne, Independent Contractors at Sensis",
            "tag:soundcloud,2010:tracks/244374452",
            638,  # 00:10:38
            _utc(2016, 1, 29, 0, 0, 0),
            "http://www.podtrac.com/pts/redirect.mp3/feeds.soundcloud.com/stream/244374452-graphistania-podcast-"
            "recording-with-stuart-begg-and-matt-byrne-independent-contractors-at-sensis.mp3",
        ),
    ),
    FeedCase(
        "npp-rtve-tiempo-de-valientes.xml",
        "spanish-accents",
        6,
        FirstEpisode(
            "El Ministerio del Tiempo - Tiempo de valientes: cap\u00edtulo 6",
            "http://rtve.es/a/3472786",
            148,  # 00:02:28
            _utc(2016, 3, 21, 21, 30, 0),
            "http://mvod.lvlt.rtve.es/resources/TE_STIEVAL/mp3/2/4/1454604673442.mp3",
        ),
    ),
    FeedCase(
        "npp-scale-your-code.xml",
        "no-durations-no-enclosure-lengths-audio-x-mp3",
        23,
        FirstEpisode(
            "Large scale image processing on the fly in 25ms with Google's first Network Engineer",
            "https://d1ngwfo98ojxvt.cloudfront.net/public/mp3/interviews/jack_levin_23.mp3",
            None,
            _utc(2016, 2, 2, 1, 5, 26),
            "https://d1ngwfo98ojxvt.cloudfront.net/public/mp3/interviews/jack_levin_23.mp3",
        ),
    ),
    FeedCase(
        "npp-se-radio.xml",
        "feedburner-wordpress-166-empty-guids-pst",
        249,
        FirstEpisode(
            "SE-Radio Episode 248: Axel Rauschmayer on JavaScript and ECMAScript 6",
            "http://www.se-radio.net/?p=1939",
            3793,  # 1:03:13
            _utc(2016, 1, 28, 18, 6, 52),  # 10:06:52 PST
            "http://feedproxy.google.com/~r/se-radio/~5/_V8a9ATpdxk/"
            "SE-Radio-Episode-248-Axel-Rauschmayer-on-JavaScript-and-ECMAScript-6.mp3",
        ),
    ),
    FeedCase(
        "partytime-homegrown-hits.xml",
        "podcasting2-no-xml-declaration-live-item",
        4,
        FirstEpisode(
            "Homegrown Hits - Episode 03",
            "0f47d504-adac-4ccb-8071-97b3a369d541",
            None,
            _utc(2023, 9, 28, 21, 20, 0),  # 16:20 -0500
            "https://feed.homegrownhits.xyz/assets/episodes/episode-03.mp3",
        ),
    ),
    FeedCase(
        "partytime-no-agenda.xml",
        "malformed-entity-gtgt-bozo",
        29,
        FirstEpisode(
            '1393: "Space Wake"',
            "http://1393.noagendanotes.com",
            None,
            _utc(2021, 10, 24, 20, 22, 24),
            "https://mp3s.nashownotes.com/NA-1393-2021-10-24-Final.mp3",
        ),
    ),
    FeedCase(
        "partytime-podverse-test-feed.xml",
        "fractional-durations-video-enclosure-live-items",
        5,
        FirstEpisode(
            "Podcasting 2.0 Dev Meeting for May 28 2022",
            "https://noagendatube.com/videos/watch/0f6507ea-8d5f-4264-b2ac-9b839f720d9b",
            None,
            _utc(2022, 5, 29, 5, 30, 25),
            "https://noagendatube.com/static/webseed/0f6507ea-8d5f-4264-b2ac-9b839f720d9b-1080.mp4",
        ),
    ),
    FeedCase(
        "partytime-themnshow.xml",
        "podcasting2-episode-with-display-attribute-op3-prefix",
        54,
        FirstEpisode(
            "Social Media",
            "ab86b7b7-79e2-43f4-9f58-8d2584b103ec",
            None,
            _utc(2024, 9, 14, 19, 5, 58),
            "https://op3.dev/e,pg=7a2d292c-8656-5fcf-88d2-31b10e54d7c7/mikeneumann.show/assets/static/"
            "themnshow054-20240914-FINAL.mp3",
        ),
    ),
    FeedCase(
        "podcastindex-example.xml",
        "podcasting2-namespace-example-live-item",
        3,
        FirstEpisode(
            "Episode 3 - The Future",
            "https://example.com/ep0003",
            None,
            _utc(2020, 10, 9, 4, 30, 38),
            "https://example.com/file-03.mp3",
        ),
    ),
    FeedCase(
        "rssparser-baywatch-berlin.xml",
        "podigee-seconds-escaped-ampersand-in-url",
        1,
        FirstEpisode(
            "Trailer",
            "cc973b648d6fb41e4e5ef7e4b4ee7604",
            114,
            _utc(2019, 11, 18, 19, 14, 32),
            "https://cdn.podigee.com/media/podcast_16544_baywatch_berlin_episode_1_trailer.mp3?v=1574079359&source=feed",
        ),
    ),
    FeedCase(
        "rssparser-endorphine-fuer-delfine.xml",
        "newline-before-declaration-german-umlauts-googleplay",
        32,
        FirstEpisode(
            "Die mit Alice Merton und der Wespen-Taschen Psychologie",
            "3602b6b4-68e4-47a6-81b9-323cc79ed87f",
            2744,  # 45:44
            _utc(2020, 10, 15, 15, 27, 0),  # 17:27 +0200
            "https://avdlswr-a.akamaihd.net/dasding/podcasts/endorphine-fuer-delfine/1320514.m.mp3",
        ),
    ),
    FeedCase(
        "rssparser-giantbomb-bombcast.xml",
        "730-items-namespace-redeclared-on-elements-pst",
        730,
        FirstEpisode(
            "Giant Bombcast 603: Call of Tuesday",
            "1600-2823",
            10475,
            _utc(2019, 10, 1, 22, 30, 0),  # 14:30 PST
            "https://dts.podtrac.com/redirect.mp3/www.giantbomb.com/podcasts/download/2823/"
            "603__Call_of_Tuesday-10-01-2019-6277737276.mp3",
        ),
    ),
    FeedCase(
        "rssparser-narro.xml",
        "utc-zone-name-seconds",
        1,
        FirstEpisode(
            "FAQ for Narro",
            "https://www.narro.co/article/54e703933058540300000069",
            74,
            _utc(2015, 2, 20, 9, 51, 15),
            "https://s3.amazonaws.com/nareta-articles/audio/54d046c293f79c0300000003/"
            "7e2d2b00-a945-441a-f49b-063786a319a4.mp3",
        ),
    ),
    FeedCase(
        "rssparser-rss092-example-iso8859.xml",
        "rss-0.92-iso-8859-1-no-guid-no-pubdate",
        2,
        FirstEpisode(
            "The First Item",
            "http://www.oreilly.com/001.mp3",  # no <guid>: the enclosure URL stands in
            None,
            None,
            "http://www.oreilly.com/001.mp3",
        ),
    ),
    FeedCase(
        "rssparser-taverncast.xml",
        "newline-before-declaration-duplicate-guid-minutes-over-59",
        130,  # 131 items, one repeats a guid
        FirstEpisode(
            "Taverncast 62 - Temporal Anomaly",
            "http://taverncast.com/shows/taverncast-62.mp3",
            4190,  # 1:09:50
            _utc(2015, 11, 7, 17, 0, 0),  # "07 Nov 2015 12:00:00 EST", no day name
            "http://www.podtrac.com/pts/redirect.mp3?http://www.taverncast.com/shows/taverncast-62.mp3",
        ),
    ),
]


@cache
def parsed(file: str) -> ParsedFeed:
    return parse_feed((FEEDS / file).read_bytes())


def test_every_shared_feed_has_a_case() -> None:
    assert FEEDS.is_dir(), f"the feed fixtures are missing: {FEEDS}"
    assert {path.name for path in FEEDS.glob("*.xml")} == {case.file for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=[f"{case.file.removesuffix('.xml')}--{case.edge_case}" for case in CASES])
def test_shared_feed(case: FeedCase) -> None:
    feed = parsed(case.file)

    assert len(feed.episodes) == case.episodes
    first = feed.episodes[0]
    assert first.title == case.first.title
    assert first.guid == case.first.guid
    assert first.duration_seconds == case.first.duration_seconds
    assert first.published_at == case.first.published_at
    assert first.audio_url == case.first.audio_url
    assert feed.title
    guids = [episode.guid for episode in feed.episodes]
    assert len(guids) == len(set(guids))
    for episode in feed.episodes:
        assert episode.published_at is None or episode.published_at.tzinfo is UTC


def test_iso_8859_1_rss_092_without_guids_or_dates() -> None:
    feed = parsed("rssparser-rss092-example-iso8859.xml")

    assert feed.title == "RSS0.92 Example"
    assert feed.language == "en-gb"
    assert [episode.guid for episode in feed.episodes] == [
        "http://www.oreilly.com/001.mp3",
        "http://www.oreilly.com/002.mp3",
    ]
    assert all(episode.published_at is None for episode in feed.episodes)
    assert sum("missing or empty guid" in warning for warning in feed.warnings) == 2


def test_taverncast_duplicate_guid_keeps_the_first_and_long_minutes_count() -> None:
    feed = parsed("rssparser-taverncast.xml")

    assert any("duplicate guid 'http://taverncast.com/shows/geekistry-2.mp3'" in w for w in feed.warnings)
    assert any("whitespace before the XML declaration" in w for w in feed.warnings)
    assert not feed.bozo  # with the stray newline ignored, the strict parser reads it
    movie_magic = next(episode for episode in feed.episodes if episode.title == "Taverncast 35: Movie Magic")
    assert movie_magic.duration_seconds == 92 * 60 + 20  # "92:20"
    assert {episode.audio_type for episode in feed.episodes} == {"audio/mpeg", "audio/mp3", "x-audio/mp3"}


def test_se_radio_empty_guids_fall_back_to_the_enclosure() -> None:
    feed = parsed("npp-se-radio.xml")

    episode_165 = next(episode for episode in feed.episodes if (episode.title or "").startswith("Episode 165:"))
    assert episode_165.guid == episode_165.audio_url
    assert sum("missing or empty guid" in warning for warning in feed.warnings) == 166
    assert sum(episode.duration_seconds is None for episode in feed.episodes) == 5


def test_no_agenda_malformed_entity_is_parsed_leniently() -> None:
    feed = parsed("partytime-no-agenda.xml")

    assert feed.bozo
    assert any("not well-formed" in warning and "undefined entity" in warning for warning in feed.warnings)
    assert feed.podcast_guid == "856cd618-7f34-57ea-9b84-3600f1f65e7f"
    assert all(episode.audio_url for episode in feed.episodes)


def test_podcasting_2_fields_and_live_items() -> None:
    example = parsed("podcastindex-example.xml")
    show = parsed("partytime-themnshow.xml")
    podverse = parsed("partytime-podverse-test-feed.xml")

    assert example.podcast_guid == "y0ur-gu1d-g035-h3r3"
    assert example.website_url == "https://example.com/podcast"  # not the liveItem's link
    assert (example.episodes[0].episode_number, example.episodes[0].season) == (3, 1)
    # <podcast:episode display="Social Media">54</podcast:episode>: the number survives the attribute
    assert (show.episodes[0].episode_number, show.episodes[0].season) == (54, 1)
    assert show.podcast_guid == "7a2d292c-8656-5fcf-88d2-31b10e54d7c7"
    assert podverse.title == "Podverse - Test Feed"  # a liveItem's <title> must not replace it
    assert [episode.duration_seconds for episode in podverse.episodes] == [None, 1015, 836, 836, 1032]
    assert podverse.episodes[0].audio_type == "video/mp4"


def test_itunes_fields() -> None:
    coding_blocks = parsed("npp-coding-blocks.xml")
    design_details = parsed("npp-design-details.xml")
    giantbomb = parsed("rssparser-giantbomb-bombcast.xml")
    scale = parsed("npp-scale-your-code.xml")
    neo4j = parsed("npp-neo4j.xml")

    assert (coding_blocks.episodes[0].episode_number, coding_blocks.episodes[0].season) == (83, 1)
    assert coding_blocks.episodes[0].explicit is False  # "clean"
    assert design_details.episodes[0].explicit is True  # "yes"
    # <itunes:explicit xmlns:itunes="...">no</itunes:explicit>
    assert {episode.explicit for episode in giantbomb.episodes} == {False}
    assert all(e.audio_length_bytes is None and e.duration_seconds is None for e in scale.episodes)
    assert neo4j.episodes[-1].audio_length_bytes is None  # length=""
    assert coding_blocks.episodes[0].audio_length_bytes == 66692288
    assert coding_blocks.episodes[0].image_url and coding_blocks.episodes[0].image_url.startswith("https://")


def test_channel_fields() -> None:
    feed = parsed("apple-example-all-about-everything.xml")

    assert feed.title == "All About Everything"
    assert feed.website_url == "http://www.example.com/podcasts/everything/index.html"
    assert feed.image_url == "http://example.com/podcasts/everything/AllAboutEverything.jpg"
    assert feed.author == "John Doe"
    assert feed.language == "en-us"
    assert feed.description_html is not None
    assert feed.description_html.startswith("All About Everything is a show about everything.")
    assert not feed.warnings


# --- edge cases the shared feeds do not cover ------------------------------------------------------


def _rss(items: str, channel: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/">\n'
        f"<channel><title>Test show</title>{channel}{items}</channel></rss>"
    ).encode()


def _item(
    guid: str | None, *, title: str = "T", enclosure: str | None = "https://cdn.example/a.mp3", extra: str = ""
) -> str:
    parts = [f"<title>{title}</title>"]
    if guid is not None:
        parts.append(f"<guid>{guid}</guid>")
    if enclosure is not None:
        parts.append(f'<enclosure url="{enclosure}" length="123" type="audio/mpeg"/>')
    return "<item>" + "".join(parts) + extra + "</item>"


def test_duplicate_guids_keep_the_first_in_document_order() -> None:
    body = _rss(
        _item("a", title="one") + _item("b", title="two") + _item("a", title="three") + _item("c", title="four")
    )

    feed = parse_feed(body)

    assert [(e.guid, e.title) for e in feed.episodes] == [("a", "one"), ("b", "two"), ("c", "four")]
    assert feed.warnings == ["item 3 ('three'): duplicate guid 'a', keeping the first"]


def test_missing_enclosure_keeps_the_episode_with_a_warning() -> None:
    feed = parse_feed(_rss(_item("g1", title="Bonus notes", enclosure=None)))

    assert len(feed.episodes) == 1
    assert feed.episodes[0].audio_url is None
    assert feed.warnings == ["item 1 ('Bonus notes'): no enclosure (no audio URL)"]


def test_item_without_guid_or_enclosure_is_skipped_by_name() -> None:
    feed = parse_feed(_rss(_item("ok") + _item(None, title="Orphan", enclosure=None)))

    assert [e.guid for e in feed.episodes] == ["ok"]
    assert feed.warnings == ["item 2 ('Orphan'): skipped, it has neither a guid nor an enclosure"]


def test_unreadable_date_and_duration_become_none_with_warnings() -> None:
    extra = "<pubDate>the day after tomorrow</pubDate><itunes:duration>about an hour</itunes:duration>"
    feed = parse_feed(_rss(_item("g", title="Odd", extra=extra)))

    episode = feed.episodes[0]
    assert (episode.published_at, episode.duration_seconds) == (None, None)
    assert feed.warnings == [
        "item 1 ('Odd'): unreadable date 'the day after tomorrow'",
        "item 1 ('Odd'): unreadable duration 'about an hour'",
    ]


def test_explicit_spellings() -> None:
    values = ["true", "yes", "Yes", "explicit", "false", "no", "clean", "maybe"]
    items = "".join(_item(str(i), extra=f"<itunes:explicit>{v}</itunes:explicit>") for i, v in enumerate(values))

    feed = parse_feed(_rss(items))

    assert [e.explicit for e in feed.episodes] == [True, True, True, True, False, False, False, None]


def test_html_is_sanitised() -> None:
    notes = (
        '<p onclick="steal()">Hello <script>alert(1)</script><b>world</b></p>'
        '<a href="javascript:alert(2)">bad</a> <a href="https://example.com/x" target="_blank">good</a>'
        '<img src="x" onerror="alert(3)"><iframe src="https://evil.example/"></iframe><ul><li>one</li></ul>'
    )
    feed = parse_feed(_rss(_item("g", extra=f"<content:encoded><![CDATA[{notes}]]></content:encoded>")))

    html = feed.episodes[0].description_html
    assert html is not None
    assert "<script" not in html and "alert" not in html
    assert "javascript:" not in html
    assert "onclick" not in html and "onerror" not in html and "<img" not in html and "<iframe" not in html
    assert '<a href="https://example.com/x" rel="noopener nofollow">good</a>' in html
    assert "<p>Hello <b>world</b></p>" in html
    assert "<ul><li>one</li></ul>" in html


def test_plain_text_description_is_escaped_not_interpreted() -> None:
    channel = "<itunes:summary>Use &lt;b&gt; for bold\nsecond line</itunes:summary>"

    feed = parse_feed(_rss(_item("g"), channel=channel))

    assert feed.description_html == "Use &lt;b&gt; for bold<br>second line"


def test_byte_order_mark_and_whitespace_before_the_declaration() -> None:
    body = b"\xef\xbb\xbf\n\n" + _rss(_item("g"))

    feed = parse_feed(body)

    assert not feed.bozo
    assert [e.guid for e in feed.episodes] == ["g"]
    assert feed.warnings == ["whitespace before the XML declaration (2 bytes) was ignored"]


def test_relative_urls_resolve_against_base_url() -> None:
    body = _rss(_item("g", enclosure="/media/a.mp3"), channel="<link>/</link>")

    feed = parse_feed(body, base_url="https://feeds.example.com/show/rss")

    assert feed.episodes[0].audio_url == "https://feeds.example.com/media/a.mp3"
    assert feed.website_url == "https://feeds.example.com/"


def test_malformed_xml_parses_what_it_can() -> None:
    body = _rss(_item("g1", title="Fine") + _item("g2", title="Broken &nbsp; entity <b>unclosed"))

    feed = parse_feed(body)

    assert feed.bozo
    assert any(w.startswith("feed is not well-formed XML") for w in feed.warnings)
    assert [e.guid for e in feed.episodes][:1] == ["g1"]


@pytest.mark.parametrize(
    "body",
    [b"", b"not a feed at all", b"<html><body><p>Hello</p></body></html>", b"\x00\xff\xfe garbage", b"{}"],
    ids=["empty", "text", "html-page", "binary", "json"],
)
def test_not_a_feed_gives_no_episodes_and_a_warning(body: bytes) -> None:
    feed = parse_feed(body)

    assert feed.episodes == []
    assert any("not an RSS or Atom feed" in warning for warning in feed.warnings)


def test_a_path_like_body_is_not_opened() -> None:
    # feedparser opens bytes/str that name a file or URL; the parser must hand it a stream instead.
    feed = parse_feed(str(FEEDS / "rssparser-narro.xml").encode())

    assert feed.episodes == []


# --- parse_duration / parse_date -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3723", 3723),
        ("  3723 ", 3723),
        ("1014.708375", 1015),
        ("1014.4", 1014),
        ("62:03", 3723),
        ("92:20", 5540),  # minutes over 59, taken at face value
        ("1:02:03", 3723),
        ("01:02:03.250", 3723),
        ("00:00", 0),
        ("0:75:00", 4500),
        ("1,5", 2),
        (None, None),
        ("", None),
        ("abc", None),
        ("-5", None),
        ("1:2:3:4", None),
        ("1.5:30", None),
        ("1:xx", None),
        ("1h 2m", None),
        ("99999999999", None),
        ("200:00:00", None),  # more than a week
    ],
)
def test_parse_duration(text: str | None, seconds: int | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Wed, 15 Jun 2014 19:00:00 GMT", _utc(2014, 6, 15, 19, 0, 0)),
        ("Mon, 15 Jun 2014 19:00:00 GMT", _utc(2014, 6, 15, 19, 0, 0)),  # wrong day name
        ("Tuesday, 10 June 2003 04:00:00 GMT", _utc(2003, 6, 10, 4, 0, 0)),
        ("Tues, 10 Jun 2003 04:00:00 GMT", _utc(2003, 6, 10, 4, 0, 0)),
        ("Tue 10 Jun 2003 04:00:00 GMT", _utc(2003, 6, 10, 4, 0, 0)),
        ("10 Jun 2003 04:00:00 PST", _utc(2003, 6, 10, 12, 0, 0)),
        ("Tue, 10 Jun 2003 04:00:00 CEST", _utc(2003, 6, 10, 2, 0, 0)),
        ("Tue, 10 Jun 2003 04:00:00 AEST", _utc(2003, 6, 9, 18, 0, 0)),
        ("Tue, 10 Jun 2003 04:00:00 GMT+2", _utc(2003, 6, 10, 2, 0, 0)),
        ("Tue, 10 Jun 2003 04:00:00 +02:00", _utc(2003, 6, 10, 2, 0, 0)),
        ("Tue, 10 Jun 2003 04:00 +0200", _utc(2003, 6, 10, 2, 0, 0)),
        ("Tue, 10 Jun 2003 04:00:00 -0700 (PDT)", _utc(2003, 6, 10, 11, 0, 0)),
        ("Fri, 22 Sep 2023 16:30:15 -0000", _utc(2023, 9, 22, 16, 30, 15)),
        ("Tue, 10 Jun 2003 04:00:00", _utc(2003, 6, 10, 4, 0, 0)),  # no zone: UTC
        ("Mon, 10 Jun 2003 4:00:00 UT", _utc(2003, 6, 10, 4, 0, 0)),
        ("03 Apr 02 1500 GMT", _utc(2002, 4, 3, 15, 0, 0)),  # the RSS 0.92 sample's channel date
        ("10 Jun 2003", _utc(2003, 6, 10, 0, 0, 0)),
        ("2020-01-01T10:00:00Z", _utc(2020, 1, 1, 10, 0, 0)),
        ("2020-01-01T10:00:00.123456789+01:00", datetime(2020, 1, 1, 9, 0, 0, 123456, tzinfo=UTC)),
        ("2024-01-01T00:00:00+0100", _utc(2023, 12, 31, 23, 0, 0)),
        ("2020-01-01 10:00:00", _utc(2020, 1, 1, 10, 0, 0)),
        ("2015-11-07 12:00:00 EST", _utc(2015, 11, 7, 17, 0, 0)),
        ("2020-01-01", _utc(2020, 1, 1, 0, 0, 0)),
        (None, None),
        ("", None),
        ("   ", None),
        ("junk", None),
        ("Thu, 31 Feb 2019 10:00:00 GMT", None),
        ("2020-13-45", None),
    ],
)
def test_parse_date(text: str | None, expected: datetime | None) -> None:
    result = parse_date(text)

    assert result == expected
    if result is not None:
        assert result.tzinfo is UTC
