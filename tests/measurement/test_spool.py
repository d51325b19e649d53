"""The prefix spool is capped in bytes: a long outage (or a flood of made-up slugs during one) cannot fill the
disk; the oldest requests for slugs that are no tenant's go first, then the oldest of all, with an alert."""

from __future__ import annotations

import fcntl
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.measurement.prefix import Buffer, RawRequest
from castmetrics.measurement.recorder import Recorder
from castmetrics.measurement.spool import Spool
from castmetrics.measurement.tenant_directory import TenantDirectory
from tests.support.http import free_port

PLAYER = "AppleCoreMedia/1.0.0.20E252 (iPhone; U; CPU OS 16_4_1 like Mac OS X; en_us)"


def records(slug: str, start: int, count: int) -> list[list[Any]]:
    """Spool records of ``slug``: ``[slug, number, padding]``, 100 bytes a line."""
    return [[slug, n, "x" * (91 - len(slug) - len(str(n)))] for n in range(start, start + count)]


def spooled(folder: Path) -> list[list[Any]]:
    """What a replay would read, in order."""
    return [orjson.loads(line) for path in Spool(folder).pending() for line in path.read_bytes().splitlines()]


def dropped(tenant: str) -> float:
    return REGISTRY.get_sample_value("castmetrics_prefix_spool_dropped_total", {"tenant": tenant}) or 0.0


def test_a_full_spool_drops_the_oldest_unknown_slug_records_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000, expendable=lambda record: record[0] == "made-up")
    # a dead process's file, then ours: known and made-up slugs interleaved, 9,000 bytes
    spool.append(records("known", 0, 20) + records("made-up", 0, 20))
    spool.rotate()
    spool.append(records("made-up", 20, 20) + records("known", 20, 30))
    assert spool.size() == 9_000
    before_unknown, before_known = dropped("unknown"), dropped("known")

    with capture_logs() as logs:
        spool.append(records("known", 50, 20))  # 2,000 more: 11,000 > 10,000

    # down to 90% of the cap: 11,000 - 9,000 = 2,000 bytes, the 20 oldest made-up records
    assert spool.size() <= 9_000
    kept = spooled(tmp_path)
    assert [r[1] for r in kept if r[0] == "known"] == list(range(70))  # every known record, in order
    assert [r[1] for r in kept if r[0] == "made-up"] == list(range(20, 40))  # the newest made-up ones
    assert dropped("unknown") == before_unknown + 20 and dropped("known") == before_known
    [alert] = [entry for entry in logs if entry["event"] == "prefix.spool_full"]
    assert alert["log_level"] == "error" and alert["dropped_unknown_tenant"] == 20 and alert["dropped"] == 0


def test_past_the_unknown_slug_records_the_oldest_go(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000, expendable=lambda record: record[0] == "made-up")
    spool.append(records("made-up", 0, 5) + records("known", 0, 80))
    spool.rotate()
    spool.append(records("known", 80, 10))  # 9,500 bytes
    before_known = dropped("known")

    spool.append(records("known", 90, 20))  # 11,500: 2,500 to drop

    kept = spooled(tmp_path)
    assert [r[0] for r in kept].count("made-up") == 0
    assert [r[1] for r in kept] == list(range(20, 110))  # the oldest known ones went, order kept
    assert dropped("known") == before_known + 20
    assert spool.size() == 9_000


def test_a_batch_larger_than_the_cap_keeps_its_newest_records(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=64 * 1024)
    spool.append(records("known", 0, 1_000))  # 100,000 bytes at once
    kept = spooled(tmp_path)
    assert spool.size() <= 64 * 1024 * 0.9 and kept[-1][1] == 999
    assert [r[1] for r in kept] == list(range(1_000 - len(kept), 1_000))


def test_a_file_a_living_process_holds_is_left_to_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000, expendable=lambda record: record[0] == "made-up")
    spool.append(records("made-up", 0, 50))
    spool.rotate()
    other = tmp_path / "prefix-otherhost-1-1.ndjson"  # another process's, started earlier, still appending
    other.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records("made-up", 100, 40)))
    with other.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        spool.append(records("known", 0, 20))  # 11,000 bytes: 2,000 to drop, from our own file only
        assert len(other.read_bytes().splitlines()) == 40
    ours = [record for record in spooled(tmp_path) if record not in records("made-up", 100, 40)]
    assert [r[1] for r in ours if r[0] == "made-up"] == list(range(20, 50))
    assert [r[1] for r in ours if r[0] == "known"] == list(range(20))


async def test_while_the_database_is_down_the_recorder_spools_within_the_cap(
    settings: Settings, tmp_path: Path
) -> None:
    # A database nobody listens on: every write fails as an outage does, and the recorder spools.
    down = Database(f"postgresql://nobody:secret@127.0.0.1:{free_port()}/gone", pool_size=1, max_overflow=0)
    directory = TenantDirectory(down.url)
    directory.slugs = {"outage-fm": uuid.uuid4()}  # what it knew before the outage
    local = settings.model_copy(update={"data_dir": tmp_path, "prefix_spool_max_bytes": 64 * 1024})
    buffer = Buffer()
    recorder = Recorder(down, local, buffer, directory)
    now = datetime.now(UTC).timestamp()

    def request(slug: str, n: int) -> RawRequest:
        return RawRequest(now, slug, f"media.example.com/{n}.mp3", f"10.0.{n // 256}.{n % 256}", PLAYER, "", "", "GET")

    try:
        for round_ in range(4):  # 120 requests for the tenant and 400 for made-up slugs: about three times the cap
            for n in range(round_ * 100, round_ * 100 + 100):
                if n % 100 < 30:
                    buffer.append(request("outage-fm", n))
                buffer.append(request(f"random-{n}", n))
            assert await recorder.flush() == 0
    finally:
        await down.dispose()

    spool = tmp_path / "spool"
    assert recorder.spool.size() <= 64 * 1024
    kept = spooled(spool)
    known = [record for record in kept if record[2] == "outage-fm"]
    assert len(known) == 120  # every request of the tenant is still there to replay ...
    assert len(kept) < 520  # ... the made-up slugs' made room for them
