"""Demo prefix traffic: what the demo's listeners' apps would have sent through ``/p/demo/…``.

For every listening session the generator plans (``demo.listening``), the listener's app fetches the
episode's audio through the measurement prefix, when the session starts (its ``download``, else its
``play``):

* Apple-family players (Apple Podcasts, AppleCoreMedia, Safari) send a two-byte probe (``bytes=0-1``),
  then ask for the rest (``bytes=0-``); some apps ask ``bytes=0-``, the others send a plain GET; now and
  then a HEAD comes first;
* a streamed session (no ``download``) asks again from where it is (``bytes=N-``) after a long pause,
  and sometimes after a jump forward;
* subscribers' apps also download episodes nobody then plays (``DOWNLOAD_ONLY_SHARE`` of the sessions);
* bots make ``BOT_SHARE`` of the requests: OPAWG-listed bots and a few crawlers only crawlerdetect knows,
  from data-centre addresses, GET or HEAD.

Each listener keeps one app (OPAWG examples, so that they classify as that app; the shares are those of
``APPS``) and one address for the whole window: a residential address of a country in the listener's time
zone, checked against the same geolocation the recorder uses. The requests are enriched by the
recorder's ``Enricher`` and stored by ``Recorder.write``, as the prefix's would be; each id is a uuid5
of listener, episode, session and sequence (draws come from generators seeded by episode and day), so a
re-run stores nothing twice.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import random
import re
import time
import uuid
from bisect import bisect
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import accumulate
from typing import Any, Final

from rich.progress import Progress
from sqlalchemy import text

from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.demo.audience import (
    ROLLUP_CHUNK_DAYS,
    WEEKDAY_HOURS,
    WEEKEND_HOURS,
    Plan,
    Script,
    Sessions,
    SessionStart,
    _day_start,
    _Episode,
    _poisson,
    _stable_random,
)
from castmetrics.measurement import useragents
from castmetrics.measurement.enrich import ID, Enriched, country_of
from castmetrics.measurement.prefix import Buffer, RawRequest
from castmetrics.measurement.recorder import Recorder
from castmetrics.rollups import service as rollups

NAMESPACE: Final = uuid.UUID("0d7c2f4e-8a51-4b3e-9a57-3c1f6e2b9d84")  # of the demo's request ids
BOT_SHARE: Final = 0.07  # of all requests
DOWNLOAD_ONLY_SHARE: Final = 0.2  # extra downloads never played, per listening session
HEAD_SHARE: Final = 0.04  # sessions whose app sends a HEAD first
RESUME_REFETCH_SECONDS: Final = 600.0  # a pause at least this long: the player asks for the rest again
JUMP_REFETCH_SHARE: Final = 0.3  # of skips and seeks forward that ask for the rest from there
BYTES_PER_SECOND: Final = 16_000  # 128 kbit/s, for an episode whose feed gave no length
BATCH: Final = 20_000  # requests per Recorder.write

# (list, entry name, share of listeners, how it fetches: "probe" = bytes=0-1 then bytes=0-, "range" =
# bytes=0-, "plain" = no Range). Shares of the podcast apps as networks see them: Apple ~40%, Spotify ~25%.
APPS: Final[tuple[tuple[str, str, float, str], ...]] = (
    ("apps", "Apple Podcasts", 0.29, "probe"),
    ("libraries", "AppleCoreMedia", 0.11, "probe"),
    ("apps", "Spotify", 0.25, "plain"),
    ("apps", "Overcast", 0.05, "range"),
    ("apps", "Pocket Casts", 0.04, "plain"),
    ("apps", "Podcast Addict", 0.04, "range"),
    ("apps", "CastBox", 0.03, "range"),
    ("apps", "YouTube Music", 0.02, "plain"),
    ("apps", "Amazon Music", 0.02, "plain"),
    ("apps", "iHeartRadio", 0.02, "plain"),
    ("apps", "Castro", 0.01, "plain"),
    ("apps", "AntennaPod", 0.01, "range"),
    ("apps", "Deezer", 0.01, "plain"),
    ("apps", "Goodpods", 0.01, "plain"),
    ("browsers", "Chrome", 0.045, "range"),  # web players: the Referer names the player (WEB_PLAYERS)
    ("browsers", "Safari", 0.025, "probe"),
    ("browsers", "Firefox", 0.01, "range"),
    ("browsers", "Edge", 0.01, "range"),
)
# Web players a browser plays from (``referrers`` entries), with shares; None: no Referer.
WEB_PLAYERS: Final[tuple[tuple[str | None, float], ...]] = (
    ("Apple Podcasts", 0.3),
    ("Podbean", 0.15),
    ("Pocket Casts", 0.1),
    ("Player FM", 0.1),
    ("Goodpods", 0.05),
    ("Podcast Index", 0.05),
    ("Listen Notes", 0.05),
    (None, 0.2),
)
# (OPAWG bots entry, weight): its first example is the user agent.
BOTS: Final[tuple[tuple[str, float], ...]] = (
    ("Googlebot", 3.0),
    ("Spotify cache service", 2.0),
    ("Microsoft Bingbot", 2.0),
    ("AhrefsBot", 1.5),
    ("Facebook Bot", 1.0),
    ("OpenAI GPTBot", 1.0),
    ("Podcastindex.org", 1.0),
    ("ListenNotes", 1.0),
    ("Podscan Bot", 1.0),
    ("Claudebot", 0.5),
    ("Overcast Transcriber", 0.5),
    ("SEMrushBot", 0.5),
    ("curl", 0.5),
)
# Crawlers no OPAWG entry names (crawlerdetect knows them), with weights.
CRAWLERS: Final[tuple[tuple[str, float], ...]] = (
    ("Mozilla/5.0 (compatible; MojeekBot/0.11; +https://www.mojeek.com/bot.html)", 0.5),
    ("Mozilla/5.0 (compatible; SeznamBot/4.0; +https://o-seznam.cz/napoveda/vyhledavani/en/seznambot-crawler/)", 0.5),
)
BOT_NETWORKS: Final = ("66.249.64.0/19", "3.0.0.0/9", "52.0.0.0/11", "88.198.0.0/16", "34.64.0.0/10", "20.0.0.0/11")
# The listener's UTC offset (``listening.ZONES``) -> the countries there, with shares.
COUNTRIES_BY_ZONE: Final[dict[float, tuple[tuple[str, float], ...]]] = {
    -5.0: (("US", 0.8), ("CA", 0.2)),
    -6.0: (("US", 0.85), ("MX", 0.15)),
    -7.0: (("US", 0.9), ("CA", 0.1)),
    -8.0: (("US", 0.88), ("CA", 0.12)),
    -3.0: (("BR", 1.0),),
    0.0: (("GB", 0.85), ("IE", 0.15)),
    1.0: (("DE", 0.3), ("FR", 0.22), ("NL", 0.15), ("ES", 0.13), ("IT", 0.1), ("SE", 0.1)),
    5.5: (("IN", 1.0),),
    9.0: (("JP", 1.0),),
    10.0: (("AU", 1.0),),
}
# Residential and mobile networks of each country (large ISPs' blocks), IPv4 and IPv6.
NETWORKS: Final[dict[str, tuple[str, ...]]] = {
    "US": ("73.0.0.0/8", "98.192.0.0/10", "71.192.0.0/12", "174.48.0.0/12", "67.160.0.0/11", "2601::/20",
           "2607:fb90::/32"),
    "CA": ("99.224.0.0/11", "70.48.0.0/13", "142.112.0.0/12", "2607:fea8::/32"),
    "MX": ("189.128.0.0/10", "201.96.0.0/11"),
    "BR": ("177.0.0.0/12", "189.0.0.0/11", "179.96.0.0/12", "187.0.0.0/13"),
    "GB": ("86.128.0.0/10", "81.128.0.0/12", "90.192.0.0/11", "2.96.0.0/13", "2a00:23c0::/27"),
    "IE": ("86.40.0.0/13", "109.76.0.0/14"),
    "DE": ("79.192.0.0/10", "91.0.0.0/10", "84.128.0.0/10", "93.192.0.0/10", "2003::/19"),
    "FR": ("86.192.0.0/11", "90.0.0.0/9", "2a01:cb00::/24"),
    "NL": ("84.24.0.0/13", "77.160.0.0/12"),
    "ES": ("83.32.0.0/11", "88.0.0.0/11", "79.144.0.0/12"),
    "IT": ("79.0.0.0/11", "93.32.0.0/12", "2.32.0.0/12"),
    "SE": ("78.64.0.0/12", "90.224.0.0/13", "81.224.0.0/12"),
    "IN": ("117.192.0.0/10", "106.192.0.0/11", "157.32.0.0/12", "2409:4000::/22"),
    "JP": ("126.0.0.0/8", "60.64.0.0/11", "153.128.0.0/10"),
    "AU": ("1.128.0.0/11", "101.160.0.0/11", "120.144.0.0/13", "2001:8003::/32"),
}  # fmt: skip
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_WEEKDAY_CUMULATIVE = list(accumulate(WEEKDAY_HOURS))
_WEEKEND_CUMULATIVE = list(accumulate(WEEKEND_HOURS))


@dataclass(frozen=True, slots=True)
class AudioFile:
    """An episode's audio as the prefix sees it requested."""

    url: str  # host/path?query: the audio URL without its scheme
    bytes_per_second: float


@dataclass(frozen=True, slots=True)
class Client:
    """A listener's app and address, the same every day."""

    user_agent: str
    referer: str
    address: str
    fetch: str  # "probe", "range" or "plain" (see APPS)


@dataclass(frozen=True, slots=True)
class Bot:
    user_agent: str
    address: str


Request = tuple[uuid.UUID, RawRequest]  # (id, the request)


_NUMBERS = [str(n).encode() for n in range(100)]


def _pick(cumulative: list[float], rng: random.Random) -> int:
    """An index drawn with the weights whose running sums are ``cumulative``."""
    return min(len(cumulative) - 1, bisect(cumulative, rng.random() * cumulative[-1]))


def _request_id(prefix: Any, number: int) -> uuid.UUID:
    """``uuid.uuid5(NAMESPACE, name + str(number))`` where ``prefix`` is a sha1 already fed the namespace and
    ``name``."""
    digest = prefix.copy()
    digest.update(_NUMBERS[number] if number < 100 else str(number).encode())
    return uuid.UUID(bytes=digest.digest()[:16], version=5)


def _examples(classifier: useragents.Classifier, list_name: str, name: str) -> list[str]:
    """The entry's examples that a client sends as they are (ASCII) and that classify to that entry."""
    kind = dict(useragents.ENTITY_LISTS).get(list_name)
    entry = next((e for e in classifier.lists[list_name].entries if e.name == name), None)
    if entry is None:
        return []
    found = []
    for example in entry.examples:
        if not example.isascii() or not example.strip():
            continue
        info = classifier.classify(example)
        if info.type == kind and info.name == name and (kind == "bot") == info.is_bot:
            found.append(example)
    return found


@dataclass(frozen=True)
class Catalog:
    """The apps, web players and bots of the mix, from the active OPAWG lists' examples."""

    apps: list[tuple[list[str], str, bool]]  # (user agents, how it fetches, a browser), in APPS order
    app_weights: list[float]
    players: list[str]  # Referer values, "" for none
    player_weights: list[float]
    bots: list[Bot]
    bot_weights: list[float]

    @classmethod
    def build(cls) -> Catalog:
        classifier = useragents.default()
        apps, app_weights = [], []
        for list_name, name, share, fetch in APPS:
            if examples := _examples(classifier, list_name, name):
                apps.append((examples, fetch, list_name == "browsers"))
                app_weights.append(share)
        if not apps:
            raise ValueError("the user-agent lists have no usable example of any app the demo uses (APPS)")
        players, player_weights = [], []
        for player, share in WEB_PLAYERS:
            if player is None:
                players.append("")
                player_weights.append(share)
                continue
            entry = next((e for e in classifier.lists["referrers"].entries if e.name == player), None)
            referer = next((r for r in entry.examples if r.isascii()), None) if entry else None
            if referer and classifier.referrer_of(referer) == entry:
                players.append(referer)
                player_weights.append(share)
        bots, bot_weights = [], []
        rng = random.Random(NAMESPACE.int)
        candidates = [(_examples(classifier, "bots", name)[:1], weight) for name, weight in BOTS]
        for agents, weight in [*candidates, *(([agent], weight) for agent, weight in CRAWLERS)]:
            if agents and classifier.classify(agents[0]).is_bot:
                network = ipaddress.ip_network(rng.choice(BOT_NETWORKS))
                address = network.network_address + rng.randrange(1, network.num_addresses - 1)
                bots.append(Bot(agents[0], str(address)))
                bot_weights.append(weight)
        return cls(apps, app_weights, players, player_weights, bots, bot_weights)


@functools.cache
def _networks(country: str) -> list[tuple[int, int, int]]:
    """(IP version, first address, size) of ``country``'s networks."""
    return [
        (network.version, int(network.network_address), network.num_addresses)
        for network in map(ipaddress.ip_network, NETWORKS[country])
    ]


@functools.cache
def _countries(offset: float) -> tuple[list[str], list[float]]:
    """The countries of a UTC offset and their cumulative shares."""
    countries = COUNTRIES_BY_ZONE.get(offset, (("US", 1.0),))
    return [country for country, _ in countries], list(accumulate(share for _, share in countries))


def residential_address(rng: random.Random, country: str) -> str:
    """An address in one of ``country``'s residential networks that the geolocation places there."""
    address = ""
    networks = _networks(country)
    for _ in range(20):
        version, first, size = networks[int(rng.random() * len(networks))]
        number = first + 1 + int(rng.random() * (size - 2))
        address = str(ipaddress.IPv4Address(number) if version == 4 else ipaddress.IPv6Address(number))
        if country_of(address) == country:
            break
    return address


async def audio_files(db: Database, tenant_id: uuid.UUID) -> dict[str, AudioFile]:
    """The tenant's episodes with an audio URL, by episode id (a string, as the plan keeps them)."""
    async with db.tenant_transaction(tenant_id) as session:
        rows = await session.execute(
            text("SELECT id, audio_url, audio_length_bytes, duration_seconds FROM episodes WHERE audio_url IS NOT NULL")
        )
        files = {}
        for row in rows:
            rate = BYTES_PER_SECOND
            if row.audio_length_bytes and row.duration_seconds and row.duration_seconds > 0:
                rate = max(1_000, row.audio_length_bytes // row.duration_seconds)
            files[str(row.id)] = AudioFile(_SCHEME.sub("", row.audio_url.strip()), float(rate))
        return files


class Traffic:
    """Turns the plan's sessions into prefix requests (see the module's notes)."""

    def __init__(self, plan: Plan, slug: str, files: dict[str, AudioFile], catalog: Catalog | None = None) -> None:
        self.plan = plan
        self.slug = slug
        self.files = files
        self.catalog = catalog or Catalog.build()
        self.until = plan.until.timestamp()
        self.start = plan.start.timestamp()
        self._app_cumulative = list(accumulate(self.catalog.app_weights))
        self._player_cumulative = list(accumulate(self.catalog.player_weights))
        self._bot_cumulative = list(accumulate(self.catalog.bot_weights))
        self._clients: dict[int, Client] = {}
        self.bots = 0  # bot requests produced

    def client(self, index: int) -> Client:
        """Listener ``index``'s app and address, drawn from its id alone."""
        if (known := self._clients.get(index)) is not None:
            return known
        rng = _stable_random("client", self.plan.listeners[index])
        apps, players = self._app_cumulative, self._player_cumulative
        examples, fetch, browser = self.catalog.apps[_pick(apps, rng)]
        agent = examples[min(len(examples) - 1, int(len(examples) * rng.random() ** 3))]  # the first ones mostly
        referer = self.catalog.players[_pick(players, rng)] if browser and players else ""
        countries, shares = _countries(self.plan.zones[index].utcoffset(None).total_seconds() / 3_600)
        country = countries[_pick(shares, rng)]
        client = self._clients[index] = Client(agent, referer, residential_address(rng, country), fetch)
        return client

    def requests(self, sessions: Sessions) -> list[Request]:
        """The requests of ``sessions`` (as ``Plan.batches`` collects them), plus the download-only
        ones and the bots of those episodes and days."""
        out: list[Request] = []
        for episode, day, started in sessions:
            audio = self.files.get(episode.id)
            if audio is not None:
                self._episode_day(out, audio, episode, day, started)
        return out

    def _episode_day(
        self, out: list[Request], audio: AudioFile, episode: _Episode, day: date, started: list[SessionStart]
    ) -> None:
        rng = _stable_random("requests", episode.id, day.toordinal())
        before = len(out)
        for index, start, script, k in started:
            self._session(out, rng, audio, episode, day, index, start, script, f"{k}")
        for j in range(_poisson(rng, DOWNLOAD_ONLY_SHARE * len(started))):
            first, count = episode.followers if episode.followers[1] else self.plan.casual
            index = first + int(count * rng.random() ** 2)
            offset = self.plan.zones[index].utcoffset(None).total_seconds()
            hours = _WEEKEND_CUMULATIVE if day.weekday() >= 5 else _WEEKDAY_CUMULATIVE
            hour = _pick(hours, rng)
            start = _day_start(day) + (hour + rng.random()) * 3_600 - offset
            if start < self.start or (episode.published is not None and start < episode.published):
                continue
            self._session(out, rng, audio, episode, day, index, start, [(0.0, "download", None)], f"only{j}")
        humans = len(out) - before
        bots = _poisson(rng, humans * BOT_SHARE / (1 - BOT_SHARE)) if self.catalog.bots else 0
        prefix = hashlib.sha1(NAMESPACE.bytes + f"bot/{episode.id}/{day.isoformat()}/".encode())
        for j in range(bots):
            bot = self.catalog.bots[_pick(self._bot_cumulative, rng)]
            at = _day_start(day) + rng.random() * 86_400
            method = "HEAD" if rng.random() < 0.3 else "GET"
            if self.start <= at < self.until and (episode.published is None or at >= episode.published):
                raw = RawRequest(at, self.slug, audio.url, bot.address, bot.user_agent, "", "", method)
                out.append((_request_id(prefix, j), raw))
                self.bots += 1

    def _session(
        self,
        out: list[Request],
        rng: random.Random,
        audio: AudioFile,
        episode: _Episode,
        day: date,
        index: int,
        start: float,
        script: Script,
        name: str,
    ) -> None:
        client = self.client(index)
        at = start + script[0][0]
        fetches: list[tuple[float, str, str]] = []  # (when, Range, method)
        if rng.random() < HEAD_SHARE:
            fetches.append((at, "", "HEAD"))
        if client.fetch == "probe":
            fetches += ((at + 0.05, "bytes=0-1", "GET"), (at + 0.2, "bytes=0-", "GET"))
        else:
            fetches.append((at + 0.05, "bytes=0-" if client.fetch == "range" else "", "GET"))
        if script[0][1] != "download":  # (a download is played from the file) a stream asks for the rest again
            last = 0.0
            for seconds, kind, data in script:
                position: float | None = None
                if kind == "resume" and seconds - last >= RESUME_REFETCH_SECONDS and data:
                    position = data["position_seconds"]
                elif (
                    kind in ("skip", "seek")
                    and data
                    and data["to_seconds"] > data["from_seconds"]
                    and rng.random() < JUMP_REFETCH_SHARE
                ):
                    position = data["to_seconds"]
                if position:
                    fetches.append((start + seconds + 0.1, f"bytes={int(position * audio.bytes_per_second)}-", "GET"))
                last = seconds
        listener = self.plan.listeners[index]
        prefix = hashlib.sha1(NAMESPACE.bytes + f"{listener}/{episode.id}/{day.isoformat()}.{name}/".encode())
        for sequence, (moment, range_, method) in enumerate(fetches):
            if moment < self.until:
                raw = RawRequest(moment, self.slug, audio.url, client.address, client.user_agent, client.referer,
                                 range_, method)  # fmt: skip
                out.append((_request_id(prefix, sequence), raw))


async def store(recorder: Recorder, requests: list[Request]) -> None:
    """Enrich the requests as the recorder does and store them through ``Recorder.write``, each with its
    deterministic id (instead of the random one the recorder gives a live request)."""
    enrich = recorder.enricher.enrich
    for offset in range(0, len(requests), BATCH):
        records: list[Enriched] = []
        for request_id, raw in requests[offset : offset + BATCH]:
            record = list(enrich(raw))
            record[ID] = request_id
            records.append(tuple(record))
        await recorder.write(records)


async def count_stored(db: Database, tenant_id: uuid.UUID, plan: Plan) -> int:
    """The tenant's recorded requests in the plan's window."""
    async with db.tenant_transaction(tenant_id) as session:
        found = await session.execute(
            text("SELECT count(*) FROM download_requests WHERE requested_at >= :start AND requested_at < :until"),
            {"start": plan.start, "until": plan.until},
        )
        return int(found.scalar_one())


class Feed:
    """The demo's prefix requests beside its listener events. ``Plan.batches`` collects the sessions in
    ``sessions``; ``step`` (after each events batch) turns them into requests and hands each full batch to
    a task of its own, which stores it and rebuilds the download rollups of the UTC days completed so far,
    while the next events are produced and written (one batch in flight at a time); ``finish`` stores the
    rest and rebuilds the remaining days."""

    def __init__(
        self, db: Database, tenant_id: uuid.UUID, traffic: Traffic, recorder: Recorder, progress: Progress | None
    ) -> None:
        self.db = db
        self.tenant_id = tenant_id
        self.traffic = traffic
        self.recorder = recorder
        self.sessions: Sessions = []
        self.requests = 0  # produced
        self.stored = 0  # new in the database
        self.seconds = 0.0  # the run's time spent here: producing requests, waiting for the task, the rest
        self.first_day, self.last_day = traffic.plan.utc_days
        self._pending: list[Request] = []
        self._latest: date | None = None  # the local day of the latest sessions
        self._rebuilt_through = self.first_day - timedelta(days=1)
        self._before = 0
        self._task: asyncio.Task[None] | None = None
        self._progress = progress
        self._bar = progress.add_task("Prefix requests", total=None) if progress is not None else None

    @classmethod
    async def start(
        cls, db: Database, tenant_id: uuid.UUID, plan: Plan, settings: Settings, progress: Progress | None = None
    ) -> Feed:
        """The feed of ``plan`` for the tenant's episodes with an audio URL."""
        clock = time.perf_counter()
        useragents.maybe_reload(settings.data_dir / useragents.INSTALLED_FOLDER)  # the lists a server there uses
        async with db.tenant_transaction(tenant_id) as session:
            found = await session.execute(text("SELECT slug FROM tenants WHERE id = :t"), {"t": tenant_id})
            slug = found.scalar_one()
        traffic = Traffic(plan, slug, await audio_files(db, tenant_id))
        feed = cls(db, tenant_id, traffic, Recorder(db, settings, Buffer()), progress)
        feed._before = await count_stored(db, tenant_id, plan)
        feed.seconds = time.perf_counter() - clock
        return feed

    async def step(self) -> None:
        clock = time.perf_counter()
        if self.sessions:
            self._latest = self.sessions[-1][1]
            self._pending += self.traffic.requests(self.sessions)
            self.sessions.clear()
        if len(self._pending) >= BATCH and self._latest is not None:
            # Sessions of local day L send requests from UTC day L - 1 on: the days before L - 1 are complete.
            await self._wait()
            requests, self._pending = self._pending, []
            self._task = asyncio.create_task(self._store(requests, self._latest - timedelta(days=2)))
        self.seconds += time.perf_counter() - clock

    async def finish(self) -> None:
        clock = time.perf_counter()
        await self._wait()
        requests, self._pending = self._pending, []
        await self._store(requests, self.last_day)
        self.stored = await count_stored(self.db, self.tenant_id, self.traffic.plan) - self._before
        self.seconds += time.perf_counter() - clock

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _wait(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await task

    async def _store(self, requests: list[Request], complete_through: date) -> None:
        """Store ``requests``, then rebuild the download rollups of whole chunks of days through
        ``complete_through`` (the last chunk may be short at the window's end)."""
        await store(self.recorder, requests)
        self.requests += len(requests)
        if self._progress is not None and self._bar is not None:
            self._progress.update(self._bar, completed=self.requests)
        while True:
            first = self._rebuilt_through + timedelta(days=1)
            last = min(self.last_day, first + timedelta(days=ROLLUP_CHUNK_DAYS - 1))
            if first > self.last_day or last > complete_through:
                break
            async with self.db.tenant_transaction(self.tenant_id) as session:
                await rollups.rebuild(session, self.tenant_id, first, last, kinds=("download",))
            self._rebuilt_through = last
