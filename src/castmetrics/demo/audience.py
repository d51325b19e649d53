"""The demo audience: a seeded, repeatable plan of listening sessions for the demo catalog.

The model, per episode and calendar day (the listener's local day):

* audience = show popularity × episode appeal × decay since publication (a launch peak that halves
  within days, then a long tail of back-catalog listening) × weekday (weekends lower) × a slow growth
  of the network; episodes published later than the window's end get nothing;
* that day's sessions: a Poisson draw around the audience, scaled so that the window holds about the
  requested number of events; each starts at a local hour drawn from a morning-commute-and-evening
  profile (flatter, later, at weekends) in the listener's time zone (a mix across America, Europe
  and Asia-Pacific, standard offsets);
* listeners: each show has followers (a fixed pool, some heavy listeners, some following two shows),
  who make most of the launch-week listening, and a casual pool shared by the network;
* a session: a ``download`` first for some, a ``play``, ``progress`` at every tenth of the episode
  with the seconds listened since the previous one (``listened_seconds``) and the position, now and
  then a ``pause`` and its ``resume``, a ``seek``, an ad ``skip``; fewer listeners remain the further
  into the episode (longer episodes lose more), and those who reach the end send ``complete``.

The window is the last ``WINDOW_DAYS`` days: an episode published before it still gets its tail
there (the bundled demo feeds are years old, so their episodes are all back catalog; an episode
published inside the window shows its launch).

Every draw comes from a generator seeded by episode and day, and every event id is a uuid5 of
listener, episode, session and sequence; the window ends at the start of the current hour. So the
same request within the hour produces the same events, and a re-run counts duplicates and stores
nothing twice. Events are produced and written in batches (``MAX_BATCH``), so memory stays flat.
"""

from __future__ import annotations

import hashlib
import math
import random
import uuid
from bisect import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from itertools import accumulate
from typing import Any

from castmetrics.events import service as events

SEED = 20_240_917
NAMESPACE = uuid.UUID("4b687978-1949-42cc-a796-f0581643373d")  # of the demo's event ids
WINDOW_DAYS = 700
DEFAULT_DURATION = 1_800  # seconds, for an episode whose feed gave none
PARTITION_CHUNK_DAYS = 30  # day partitions created per transaction (each takes a few locks)
ROLLUP_CHUNK_DAYS = 31  # days of rollups rebuilt per transaction

LAUNCH_DAYS = 1.5  # the launch peak's scale: the audience halves within a couple of days…
DECAY = 1.3
TAIL = 0.004  # …and settles on back-catalog listening
BACK_CATALOG_AGE = 3_650.0  # days, for an episode without a publication date
GROWTH_PER_YEAR = 0.15  # the network's audience grows slowly
FOLLOWERS_AT_LAUNCH = 0.8  # share of sessions by a show's followers in an episode's first week
FOLLOWERS_LATER = 0.45
SESSIONS_PER_FOLLOWER = 20
SESSIONS_PER_CASUAL = 1.6
SHARED_FOLLOWERS = 0.15  # of a show's followers, also followers of the next show

DOWNLOAD_SHARE = 0.4
EARLY_EXIT_SHARE = 0.12  # of those who do not finish: gone within the first two minutes
PAUSE_SHARE = 0.35
SKIP_SHARE = 0.3
SEEK_SHARE = 0.2
PROGRESS_MARKS = 10  # a progress event at every tenth of the episode

# Monday first: weekdays higher than weekends.
WEEKDAY = (1.0, 1.04, 1.04, 1.02, 0.93, 0.7, 0.68)
# Local hour profiles: commute and evening peaks on weekdays; later, flatter mornings at weekends.
WEEKDAY_HOURS = (0.4, 0.25, 0.15, 0.1, 0.15, 0.5, 2.0, 4.8, 5.2, 3.0, 2.2, 2.3,
                 2.8, 2.4, 2.0, 2.2, 3.0, 4.6, 4.4, 3.6, 3.2, 2.6, 1.6, 0.8)  # fmt: skip
WEEKEND_HOURS = (0.7, 0.4, 0.25, 0.15, 0.15, 0.3, 0.6, 1.2, 2.2, 3.2, 3.8, 3.6,
                 3.2, 3.0, 2.9, 2.8, 2.8, 2.9, 3.0, 3.1, 3.0, 2.6, 1.8, 1.1)  # fmt: skip
_WEEKDAY_CUMULATIVE = list(accumulate(WEEKDAY_HOURS))
_WEEKEND_CUMULATIVE = list(accumulate(WEEKEND_HOURS))
# (UTC offset in hours, share of listeners): standard offsets, no daylight saving.
ZONES = (
    (-5.0, 0.30), (-6.0, 0.10), (-7.0, 0.04), (-8.0, 0.14), (-3.0, 0.04),  # the Americas
    (0.0, 0.12), (1.0, 0.14),  # Europe
    (5.5, 0.04), (9.0, 0.03), (10.0, 0.05),  # Asia-Pacific
)  # fmt: skip
_EPOCH = date(1970, 1, 1).toordinal()
_GROWTH_EPOCH = date(2020, 1, 1).toordinal()

Script = list[tuple[float, str, dict[str, Any] | None]]  # (seconds after the session starts, type, data)
SessionStart = tuple[int, float, Script, int]  # (listener index, start in epoch seconds, script, k)


@dataclass(frozen=True, slots=True)
class DemoEpisode:
    """What the generator needs to know of an episode."""

    id: uuid.UUID
    podcast_id: uuid.UUID
    published_at: datetime | None
    duration_seconds: int | None


@dataclass(slots=True)
class _Episode:
    id: str
    published: float | None  # epoch seconds
    published_day: date | None
    duration: int
    appeal: float
    events_per_session: float
    followers: tuple[int, int] = (0, 0)  # (first listener index, how many)


Sessions = list[tuple[_Episode, date, list[SessionStart]]]  # an episode's sessions of one local day


def _completion_share(duration: int) -> float:
    """The share of sessions that reach the end: lower for longer episodes."""
    return max(0.3, 0.75 - 0.2 * duration / 3_600)


def _marks(rng: random.Random, duration: int) -> list[tuple[float, str]]:
    """Where a session of an episode ``duration`` seconds long acts, in order: the progress marks, and
    perhaps pauses, an ad skipped and a seek."""
    marks = [(duration * k / PROGRESS_MARKS, "progress") for k in range(1, PROGRESS_MARKS)]
    if rng.random() < PAUSE_SHARE:
        marks += [(rng.uniform(0.05, 0.95) * duration, "pause") for _ in range(1 + (rng.random() < 0.35))]
    if rng.random() < SKIP_SHARE:  # the pre-roll or the mid-roll ad
        marks.append((min(30.0, duration * 0.05) if rng.random() < 0.5 else rng.uniform(0.4, 0.6) * duration, "skip"))
    if rng.random() < SEEK_SHARE:
        marks.append((rng.uniform(0.1, 0.9) * duration, "seek"))
    marks.sort()
    return marks


def session_script(rng: random.Random, duration: int) -> Script:
    """One listening session of an episode ``duration`` seconds long, in time order."""
    script: Script = []
    t = 0.0
    if rng.random() < DOWNLOAD_SHARE:
        script.append((0.0, "download", None))
        t = 20.0 + rng.expovariate(1 / 600)  # played minutes later, mostly
    script.append((t, "play", None))
    completes = rng.random() < _completion_share(duration)
    if completes:
        stop = float(duration)
    elif rng.random() < EARLY_EXIT_SHARE:
        stop = rng.uniform(5.0, min(120.0, duration))
    else:
        stop = max(5.0, duration * rng.random() ** 1.3)  # drop-off: earlier positions more likely
    position = listened = 0.0
    for at, kind in _marks(rng, duration):
        if at >= stop:
            break
        if at < position:  # jumped over by a skip or seek
            continue
        t += at - position
        listened += at - position
        position = at
        if kind == "progress":
            script.append((t, "progress", {"listened_seconds": round(listened), "position_seconds": round(position)}))
            listened = 0.0
        elif kind == "pause":
            script.append((t, "pause", {"position_seconds": round(position)}))
            t += rng.uniform(30, 900) if rng.random() < 0.6 else rng.uniform(3_600, 36_000)
            script.append((t, "resume", {"position_seconds": round(position)}))
        elif kind == "skip":
            target = min(float(duration), position + rng.uniform(15, 90))
            script.append((t, "skip", {"from_seconds": round(position), "to_seconds": round(target), "reason": "ad"}))
            position = target
        elif rng.random() < 0.55:  # back a little, and listen to it again
            target = max(0.0, position - rng.uniform(10, 60))
            script.append((t, "seek", {"from_seconds": round(position), "to_seconds": round(target)}))
            t += position - target
            listened += position - target
        else:
            target = min(float(duration), position + rng.uniform(30, 300))
            script.append((t, "seek", {"from_seconds": round(position), "to_seconds": round(target)}))
            position = target
    if stop > position:
        t += stop - position
        listened += stop - position
        position = stop
    if listened >= 1:
        script.append((t, "progress", {"listened_seconds": round(listened), "position_seconds": round(position)}))
    if completes:
        script.append((t, "complete", {"position_seconds": duration}))
    return script


def _events_per_session(duration: int) -> float:
    rng = random.Random(SEED + duration)
    return sum(len(session_script(rng, duration)) for _ in range(200)) / 200


def _day_start(day: date) -> int:
    """Midnight UTC of ``day`` in epoch seconds."""
    return (day.toordinal() - _EPOCH) * 86_400


def _poisson(rng: random.Random, mean: float) -> int:
    if mean < 30:
        limit, k, p = math.exp(-mean), 0, rng.random()
        while p > limit:
            k += 1
            p *= rng.random()
        return k
    return max(0, round(rng.gauss(mean, math.sqrt(mean))))


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def _uuid5(prefix: Any, suffix: str) -> str:
    """``str(uuid.uuid5(NAMESPACE, name))`` where ``prefix`` is a sha1 already fed the namespace and the
    name's start: the same id, without building a UUID object (a third of the generation time)."""
    digest = prefix.copy()
    digest.update(suffix.encode())
    h = digest.hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def _stable_random(*parts: object) -> random.Random:
    """A generator seeded by ``parts`` the same way in every process (``hash`` of str is salted)."""
    digest = hashlib.blake2b("/".join(map(str, (SEED, *parts))).encode(), digest_size=16).digest()
    return random.Random(int.from_bytes(digest, "big"))


@dataclass
class Plan:
    """One run: the window, every episode's daily audience, the listener pool, the scale."""

    episodes: list[_Episode]
    start: datetime  # the earliest occurred_at (inclusive)
    until: datetime  # the latest (exclusive): the start of the current hour
    sessions_per_audience: float
    listeners: list[str] = field(default_factory=list)
    zones: list[timezone] = field(default_factory=list)
    casual: tuple[int, int] = (0, 0)
    expected_events: int = 0

    @property
    def local_days(self) -> list[date]:
        """Listeners' local days that can hold a session in the window (time zones reach a day either side)."""
        first, last = self.start.date() - timedelta(days=1), self.until.date() + timedelta(days=1)
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]

    @property
    def utc_days(self) -> tuple[date, date]:
        """The first and last UTC day the events can fall on (what the rollups rebuild)."""
        return self.start.date(), (self.until - timedelta(microseconds=1)).date()

    def audience(self, episode: _Episode, day: date) -> float:
        """The expected sessions (before scaling) of ``episode`` on local ``day``."""
        if episode.published is None:
            age = BACK_CATALOG_AGE
        else:
            assert episode.published_day is not None
            if day < episode.published_day:
                return 0.0
            age = max(0.0, (_day_start(day) + 43_200 - episode.published) / 86_400)  # at noon
        decay = float((1 + age / LAUNCH_DAYS) ** -DECAY) + TAIL
        growth = math.exp(GROWTH_PER_YEAR * (day.toordinal() - _GROWTH_EPOCH) / 365)
        return episode.appeal * decay * WEEKDAY[day.weekday()] * growth

    def kept_share(self, day: date, published: float | None) -> float:
        """The share of local ``day``'s sessions that start inside the window and after publication, by
        the hour profile and the time zone mix (at the window's edges some start outside)."""
        lower = max(self.start.timestamp(), published or 0.0)
        upper = self.until.timestamp()
        midnight = _day_start(day)
        if lower <= midnight - 14 * 3_600 and midnight + 38 * 3_600 <= upper:  # every zone's day is inside
            return 1.0
        hours = WEEKEND_HOURS if day.weekday() >= 5 else WEEKDAY_HOURS
        kept = 0.0
        for offset, share in ZONES:
            for hour, weight in enumerate(hours):
                begins = midnight + (hour - offset) * 3_600
                kept += share * weight * max(0.0, min(begins + 3_600, upper) - max(begins, lower)) / 3_600
        return kept / sum(hours)

    def batches(self, size: int = events.MAX_BATCH, sessions: Sessions | None = None) -> Iterator[list[dict[str, Any]]]:
        """The events, day after day, in lists of at most ``size``. With ``sessions``, each episode's
        sessions of a day that started in the window are appended to it too (before the events are
        yielded), for the prefix requests (``demo.downloads``)."""
        buffer: list[dict[str, Any]] = []
        for day in self.local_days:
            for episode in self.episodes:
                audience = self.audience(episode, day)
                if audience <= 0:
                    continue
                rng = _stable_random(episode.id, day.toordinal())
                started: list[SessionStart] = []
                for k in range(_poisson(rng, audience * self.sessions_per_audience)):
                    begun = self._session(buffer, rng, episode, day, k)
                    if begun is not None:
                        started.append((*begun, k))
                if sessions is not None and started:
                    sessions.append((episode, day, started))
                while len(buffer) >= size:
                    yield buffer[:size]
                    del buffer[:size]
        if buffer:
            yield buffer

    def _session(
        self, out: list[dict[str, Any]], rng: random.Random, episode: _Episode, day: date, k: int
    ) -> tuple[int, float, Script] | None:
        """Append the events of session ``k``; answers (listener index, start, script) when it started in
        the window. Every draw is made whether or not the session falls in the window, so that the sessions
        after it are the same in every run."""
        assert self.listeners
        launch_week = episode.published is not None and _day_start(day) - episode.published < 7 * 86_400
        if rng.random() < (FOLLOWERS_AT_LAUNCH if launch_week else FOLLOWERS_LATER):
            first, count = episode.followers
            index = first + int(count * rng.random() ** 2)  # heavy listeners come back more often
        else:
            first, count = self.casual
            index = first + int(count * rng.random())
        listener, zone = self.listeners[index], self.zones[index]
        hours = _WEEKEND_CUMULATIVE if day.weekday() >= 5 else _WEEKDAY_CUMULATIVE
        hour = bisect(hours, rng.random() * hours[-1])
        offset = zone.utcoffset(None).total_seconds()
        start = _day_start(day) + (hour + rng.random()) * 3_600 - offset
        script = session_script(rng, episode.duration)
        if start < self.start.timestamp() or (episode.published is not None and start < episode.published):
            return None
        until = self.until.timestamp()
        session = hashlib.sha1(NAMESPACE.bytes + f"{listener}/{episode.id}/{day.isoformat()}.{k}/".encode())
        for sequence, (seconds, event_type, data) in enumerate(script):
            moment = round(start + seconds)
            if moment >= until:
                break
            event: dict[str, Any] = {
                "id": _uuid5(session, str(sequence)),
                "episode_id": episode.id,
                "listener_id": listener,
                "event_type": event_type,
                "occurred_at": datetime.fromtimestamp(moment, zone).isoformat(),
            }
            if data is not None:
                event["event_data"] = data
            out.append(event)
        return index, start, script


def plan(episodes: Sequence[DemoEpisode], total: int, *, now: datetime, days: int = WINDOW_DAYS) -> Plan:
    """Plan about ``total`` events for ``episodes`` in the ``days`` before the start of ``now``'s hour."""
    until = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    start = until - timedelta(days=days)
    shows = sorted({e.podcast_id for e in episodes})
    popularity = {show: _stable_random("show", show).lognormvariate(0, 0.5) for show in shows}
    per_session: dict[int, float] = {}
    planned: list[tuple[_Episode, uuid.UUID]] = []
    for source in sorted(episodes, key=lambda e: (str(e.podcast_id), str(e.id))):
        duration = source.duration_seconds if source.duration_seconds and source.duration_seconds > 0 else None
        duration = min(duration or DEFAULT_DURATION, 86_400)
        if duration not in per_session:
            per_session[duration] = _events_per_session(duration)
        published = source.published_at.astimezone(UTC) if source.published_at else None
        appeal = popularity[source.podcast_id] * _stable_random("episode", source.id).lognormvariate(0, 0.35)
        planned.append(
            (
                _Episode(
                    id=str(source.id),
                    published=published.timestamp() if published else None,
                    published_day=published.date() if published else None,
                    duration=duration,
                    appeal=appeal,
                    events_per_session=per_session[duration],
                ),
                source.podcast_id,
            )
        )
    result = Plan(episodes=[e for e, _ in planned], start=start, until=until, sessions_per_audience=0.0)
    weighted: dict[uuid.UUID, float] = dict.fromkeys(shows, 0.0)  # audience × events per session
    audience: dict[uuid.UUID, float] = dict.fromkeys(shows, 0.0)
    for episode, show in planned:
        for day in result.local_days:
            expected = result.audience(episode, day)
            if expected > 0:
                expected *= result.kept_share(day, episode.published)
            weighted[show] += expected * episode.events_per_session
            audience[show] += expected
    total_weight = sum(weighted.values())
    if total <= 0 or total_weight <= 0:
        return result
    result.sessions_per_audience = total / total_weight
    result.expected_events = total
    # The listener pool: each show's followers (overlapping the next show's), then the casual listeners.
    sessions = {show: audience[show] * result.sessions_per_audience for show in shows}
    next_first, ranges = 0, {}
    for show in shows:
        followers = max(20, round(sessions[show] * FOLLOWERS_LATER / SESSIONS_PER_FOLLOWER))
        ranges[show] = (next_first, followers)
        next_first += followers - round(followers * SHARED_FOLLOWERS)
    pool_end = max(first + count for first, count in ranges.values()) if ranges else 0
    casual = max(50, round(sum(sessions.values()) * (1 - FOLLOWERS_LATER) / SESSIONS_PER_CASUAL))
    result.casual = (pool_end, casual)
    for episode, show in planned:
        episode.followers = ranges[show]
    size = pool_end + casual
    result.listeners = [hashlib.sha1(f"{SEED}/listener/{n}".encode()).hexdigest()[:20] for n in range(size)]
    zone_rng = random.Random(SEED)
    offsets = zone_rng.choices([o for o, _ in ZONES], weights=[w for _, w in ZONES], k=size)
    by_offset = {o: timezone(timedelta(hours=o)) for o, _ in ZONES}
    result.zones = [by_offset[o] for o in offsets]
    return result
