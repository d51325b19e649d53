"""``castmetrics events import`` and ``castmetrics rollups rebuild``, run as real subprocesses."""

from __future__ import annotations

import gzip
import json
import random
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from sqlalchemy import text

from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.events import bulk, service
from castmetrics.events.validation import fast_uuid
from castmetrics.tenancy.models import Tenant
from tests.factories.events import Catalog, listener_event
from tests.support.cli import run_cli


async def count_events(db: Database, tenant_id: uuid.UUID, table: str = "listener_events") -> int:
    async with db.tenant_transaction(tenant_id) as session:
        return int((await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


async def month_usage(db: Database, tenant_id: uuid.UUID) -> int:
    async with db.tenant_transaction(tenant_id) as session:
        used = await session.execute(text("SELECT coalesce(sum(events), 0) FROM usage_monthly"))
        return int(used.scalar_one())


def write_ndjson(path: Path, lines: list[Any]) -> Path:
    """One line per entry: an object is encoded, bytes are written as they are (broken lines)."""
    path.write_bytes(b"".join((line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n" for line in lines))
    return path


def summary(stdout: str) -> dict[str, int]:
    line = stdout.strip().splitlines()[-1]
    counts = {name: int(n.replace(",", "")) for n, name in re.findall(r"([\d,]+) (lines read|accepted|rejected)", line)}
    counts["duplicates"] = int(re.search(r"([\d,]+) duplicates", line).group(1).replace(",", ""))  # type: ignore[union-attr]
    return counts


async def test_ndjson_import_keeps_good_lines_and_reports_bad_ones_by_line(
    settings: Settings, catalog: Catalog, db: Database, tmp_path: Path
) -> None:
    ep = catalog.episode_ids[0]
    first = listener_event(ep, event_type="complete", event_data={"listened_seconds": 1800})
    lines: list[Any] = [
        first,  # 1
        b"",  # 2 blank: skipped, still counted as a line
        b"{broken",  # 3
        listener_event(catalog.episode_ids[1]),  # 4
        listener_event(ep, event_type="dance"),  # 5
        listener_event(str(uuid.uuid4())),  # 6 no such episode
        listener_event(ep, occurred_at="2026-11-20T10:00:00"),  # 7 no zone
        "not an object",  # 8
        first,  # 9 the same event again (in another batch): a duplicate
        listener_event(catalog.episode_ids[2]),  # 10
    ]
    path = write_ndjson(tmp_path / "events.ndjson", lines)
    rejects = tmp_path / "rejects.ndjson"
    result = run_cli(
        settings, "events", "import", str(path), "--tenant", catalog.team.slug, "--batch-size", "3",
        "--rejects", str(rejects),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert summary(result.stdout) == {"lines read": 10, "accepted": 3, "duplicates": 1, "rejected": 5}
    reported = dict(re.findall(r"^line (\d+): (.*)$", result.stdout, re.MULTILINE))
    assert sorted(map(int, reported)) == [3, 5, 6, 7, 8]
    assert reported["3"].startswith("not valid JSON")
    assert "event_type must be one of" in reported["5"]
    assert reported["6"] == "episode_id: no such episode"
    assert "time zone" in reported["7"]
    assert reported["8"] == "an event must be a JSON object"
    assert await count_events(db, catalog.team.tenant_id) == 3
    assert await month_usage(db, catalog.team.tenant_id) == 3
    written = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["line"], r["error"]) for r in written] == [(int(n), reported[n]) for n in ("3", "5", "6", "7", "8")]
    assert written[0]["record"] == "{broken"
    assert json.loads(written[1]["record"])["event_type"] == "dance"


async def test_reimporting_counts_duplicates_and_stores_nothing_twice(
    settings: Settings, catalog: Catalog, db: Database, tmp_path: Path
) -> None:
    events = [listener_event(catalog.episode_ids[i % 3]) for i in range(250)]
    path = write_ndjson(tmp_path / "events.jsonl", events)
    first = run_cli(settings, "events", "import", str(path), "--tenant", catalog.team.slug, "--batch-size", "100")
    assert first.returncode == 0, first.stdout + first.stderr
    assert summary(first.stdout) == {"lines read": 250, "accepted": 250, "duplicates": 0, "rejected": 0}
    again = run_cli(settings, "events", "import", str(path), "--tenant", catalog.team.slug, "--batch-size", "100")
    assert again.returncode == 0, again.stdout + again.stderr
    assert summary(again.stdout) == {"lines read": 250, "accepted": 0, "duplicates": 250, "rejected": 0}
    assert await count_events(db, catalog.team.tenant_id) == 250
    assert await month_usage(db, catalog.team.tenant_id) == 250


async def test_csv_import_with_json_columns_and_empty_cells(
    settings: Settings, catalog: Catalog, db: Database, tmp_path: Path
) -> None:
    ep = catalog.episode_ids[0]
    now = datetime.now(UTC) - timedelta(minutes=5)
    stamp = now.isoformat()
    known = str(uuid.uuid4())
    rows = [
        "id,episode_id,listener_id,event_type,event_data,occurred_at",  # 1
        f'{known},{ep},l-1,complete,"{{""listened_seconds"": 95.5, ""app"": ""a, b""}}",{stamp}',  # 2
        f",{ep},l-2,play,,{stamp}",  # 3: no id (one is made), no event_data
        "",  # 4 blank
        f"{uuid.uuid4()},{ep},l-3,play,{{not json}},{stamp}",  # 5
        f"{uuid.uuid4()},{ep},l-4,play",  # 6 too few cells
        f'{uuid.uuid4()},{ep},"l-5\nwith a line break",skip,,{stamp}',  # 7-8: one record on two lines
        f"{uuid.uuid4()},{ep},l-6,dance,,{stamp}",  # 9
    ]
    path = tmp_path / "events.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = run_cli(settings, "events", "import", str(path), "--tenant", catalog.team.slug)
    assert result.returncode == 1, result.stdout + result.stderr
    assert summary(result.stdout) == {"lines read": 9, "accepted": 3, "duplicates": 0, "rejected": 3}
    reported = dict(re.findall(r"^line (\d+): (.*)$", result.stdout, re.MULTILINE))
    assert sorted(map(int, reported)) == [5, 6, 9]
    assert reported["5"].startswith("event_data is not valid JSON")
    assert reported["6"] == "the row has 4 cells, the header 6"
    assert "event_type" in reported["9"]
    async with db.tenant_transaction(catalog.team.tenant_id) as session:
        stored = {
            row.listener_id: row
            for row in await session.execute(
                text("SELECT id, listener_id, event_data, occurred_at FROM listener_events")
            )
        }
    assert set(stored) == {"l-1", "l-2", "l-5\nwith a line break"}
    assert str(stored["l-1"].id) == known
    assert stored["l-1"].event_data == {"listened_seconds": 95.5, "app": "a, b"}
    assert stored["l-2"].event_data is None
    assert stored["l-2"].occurred_at == now


async def test_attribution_import(settings: Settings, catalog: Catalog, db: Database, tmp_path: Path) -> None:
    now = datetime.now(UTC).isoformat()
    events = [
        {"id": str(uuid.uuid4()), "campaign_id": catalog.campaign_id, "listener_id": "l1",
         "attribution_type": "impression", "episode_id": catalog.episode_ids[0], "occurred_at": now},
        {"id": str(uuid.uuid4()), "campaign_id": catalog.campaign_id, "listener_id": "l1",
         "attribution_type": "conversion", "attribution_data": {"revenue": 20, "currency": "EUR"}, "occurred_at": now},
        {"campaign_id": str(uuid.uuid4()), "listener_id": "l1", "attribution_type": "click", "occurred_at": now},
    ]  # fmt: skip
    path = write_ndjson(tmp_path / "touches.ndjson", events)
    result = run_cli(settings, "events", "import", str(path), "--tenant", catalog.team.slug, "--kind", "attribution")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "line 3: campaign_id: no such campaign" in result.stdout
    assert await count_events(db, catalog.team.tenant_id, "attribution_events") == 2


async def test_usage_errors_exit_2_and_write_nothing(
    settings: Settings, catalog: Catalog, db: Database, tmp_path: Path
) -> None:
    path = write_ndjson(tmp_path / "events.ndjson", [listener_event(catalog.episode_ids[0])])
    bad_header = tmp_path / "bad.csv"
    bad_header.write_text("episode_id,listener_id,event_type,occurred_at,colour\n")
    cases = [
        (("events", "import", str(path), "--tenant", "no-such-tenant"), "no tenant with slug"),
        (("events", "import", str(path), "--tenant", catalog.team.slug, "--kind", "download"), "--kind"),
        (("events", "import", str(tmp_path / "missing.ndjson"), "--tenant", catalog.team.slug), "cannot read"),
        (("events", "import", str(tmp_path), "--tenant", catalog.team.slug, "--format", "ndjson"), "cannot read"),
        (("events", "import", str(bad_header), "--tenant", catalog.team.slug), "unknown column(s) 'colour'"),
        (("events", "import", str(tmp_path / "x.txt"), "--tenant", catalog.team.slug), "cannot tell the format"),
    ]
    for args, message in cases:
        result = run_cli(settings, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert await count_events(db, catalog.team.tenant_id) == 0


async def test_rollups_rebuild_matches_a_count_of_raw_events(
    settings: Settings, catalog: Catalog, db: Database, owner_db: Database, tmp_path: Path
) -> None:
    rng = random.Random(4)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    events = [
        listener_event(
            rng.choice(catalog.episode_ids),
            listener_id=f"listener-{rng.randrange(40)}",
            event_type=rng.choice(["play", "complete", "skip", "download"]),
            occurred_at=(today - timedelta(days=rng.randrange(3), seconds=rng.randrange(86_400))).isoformat(),
        )
        for _ in range(400)
    ]
    events = [e for e in events if datetime.fromisoformat(e["occurred_at"]) < datetime.now(UTC)]
    path = write_ndjson(tmp_path / "events.ndjson", events)
    assert run_cli(settings, "events", "import", str(path), "--tenant", catalog.team.slug).returncode == 0

    result = run_cli(settings, "rollups", "rebuild", "--tenant", catalog.team.slug)
    assert result.returncode == 0, result.stdout + result.stderr
    first = (today - timedelta(days=29)).date()
    assert f"{catalog.team.slug}: 30 days rebuilt ({first} to {today.date()})" in result.stdout
    async with db.tenant_transaction(catalog.team.tenant_id) as session:
        rolled = (
            await session.execute(
                text(
                    "SELECT day, scope_id, events, plays, completes, skips, downloads, unique_listeners "
                    "FROM listener_daily WHERE scope_id IN (SELECT id FROM episodes) ORDER BY 1, 2"
                )
            )
        ).all()
        counted = (
            await session.execute(
                text(
                    "SELECT (occurred_at AT TIME ZONE 'UTC')::date, episode_id, count(*), "
                    "count(*) FILTER (WHERE event_type = 'play'), count(*) FILTER (WHERE event_type = 'complete'), "
                    "count(*) FILTER (WHERE event_type = 'skip'), count(*) FILTER (WHERE event_type = 'download'), "
                    "count(DISTINCT listener_id) FROM listener_events GROUP BY 1, 2 ORDER BY 1, 2"
                )
            )
        ).all()
    assert [tuple(r) for r in rolled] == [tuple(r) for r in counted]
    assert sum(r[2] for r in rolled) == len(events)

    everyone = run_cli(settings, "rollups", "rebuild", "--from", str(first), "--to", str(today.date()))
    assert everyone.returncode == 0, everyone.stderr
    assert f"{catalog.team.slug}: 30 days rebuilt" in everyone.stdout
    backwards = run_cli(settings, "rollups", "rebuild", "--from", "2026-11-20", "--to", "2026-11-10")
    assert backwards.returncode == 2 and "is after --to" in backwards.stderr
    unknown = run_cli(settings, "rollups", "rebuild", "--tenant", "no-such-tenant")
    assert unknown.returncode == 2 and "no tenant with slug" in unknown.stderr
    bad_kind = run_cli(settings, "rollups", "rebuild", "--kind", "moods")
    assert bad_kind.returncode == 2 and "--kind must be listener, download or all" in bad_kind.stderr
    listeners_only = run_cli(settings, "rollups", "rebuild", "--tenant", catalog.team.slug, "--kind", "listener")
    assert listeners_only.returncode == 0 and "30 days rebuilt" in listeners_only.stdout

    # days whose raw rows are past the retention are never rebuilt (their rollups are the only copy left)
    async def day_rows(day: date) -> list[Any]:
        async with db.tenant_transaction(catalog.team.tenant_id) as session:
            found = await session.execute(text("SELECT * FROM listener_daily WHERE day = :d ORDER BY 2"), {"d": day})
            return [tuple(row) for row in found]

    old_day = (today - timedelta(days=2)).date()
    before = await day_rows(old_day)
    assert before  # the events of that day are rolled up
    async with owner_db.transaction() as session:  # as if its raw rows were gone
        await session.execute(
            text("DELETE FROM listener_events WHERE occurred_at < :d"), {"d": today - timedelta(days=1)}
        )
    short = run_cli(
        settings, "rollups", "rebuild", "--tenant", catalog.team.slug, env={"CASTMETRICS_EVENT_RETENTION_DAYS": "2"}
    )
    assert short.returncode == 0, short.stderr
    assert (
        f"{catalog.team.slug}: 2 days rebuilt ({first} to {today.date()}); 28 days skipped ({first} to {old_day})"
        in short.stdout
    ), short.stdout
    assert await day_rows(old_day) == before


async def tenant_row(db: Database, tenant_id: uuid.UUID) -> Tenant:
    async with db.tenant_transaction(tenant_id) as session:
        return await session.get_one(Tenant, tenant_id)


async def test_concurrent_batches_repeating_each_other_store_every_event_once(
    catalog: Catalog, db: Database, tmp_path: Path
) -> None:
    """Two batches in flight at once, the second repeating the first's events in reverse order (the
    pattern that can deadlock two transactions): each event is stored once, the repeats counted."""
    events = [listener_event(catalog.episode_ids[0]) for _ in range(4)]
    path = write_ndjson(tmp_path / "events.ndjson", events + events[::-1] + events)
    source = bulk.Source(path, "ndjson", "listener")
    try:
        totals = await bulk.run(
            source, db, await tenant_row(db, catalog.team.tenant_id), batch_size=4, retention_days=730, concurrency=2
        )
    finally:
        source.close()
    assert (totals.accepted, totals.duplicates, totals.rejected, totals.batches) == (4, 8, 0, 3)
    assert totals.lines_read == totals.last_line == 12
    assert await count_events(db, catalog.team.tenant_id) == 4


async def test_a_batch_that_loses_a_deadlock_is_stored_again(
    catalog: Catalog, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_store = service.store
    calls = 0

    async def deadlocking_once(*args: Any, **kwargs: Any) -> service.IngestResult:
        nonlocal calls
        calls += 1
        result = await real_store(*args, **kwargs)  # written, then rolled back by the error
        if calls == 1:
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return result

    monkeypatch.setattr(service, "store", deadlocking_once)
    path = write_ndjson(tmp_path / "events.ndjson", [listener_event(catalog.episode_ids[1]) for _ in range(3)] + [b"{"])
    source = bulk.Source(path, "ndjson", "listener")
    try:
        totals = await bulk.run(
            source, db, await tenant_row(db, catalog.team.tenant_id), batch_size=10, retention_days=730
        )
    finally:
        source.close()
    assert calls == 2
    assert (totals.accepted, totals.duplicates, totals.rejected) == (3, 0, 1)
    assert await count_events(db, catalog.team.tenant_id) == 3


def test_a_file_in_parts_imported_by_worker_processes(
    catalog: Catalog,
    settings: Settings,
    runtime_url: str,
    owner_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--jobs``: parts cut at line ends, each imported by a process of its own; lines keep their
    numbers in the whole file and an event repeated across parts is stored once."""
    monkeypatch.setattr(bulk, "MIN_PART", 1)  # the forked workers see it too
    events = [listener_event(catalog.episode_ids[i % 3]) for i in range(300)]
    lines: list[Any] = [*events[:150], b"{broken", *events[150:], events[0], b""]  # 303 lines, the last blank
    path = write_ndjson(tmp_path / "events.ndjson", lines)
    parts = bulk.plan_parts(path, 3)
    assert [p.first_line for p in parts][0] == 1 and len(parts) == 3
    assert parts[-1].end == path.stat().st_size
    jobs = [
        bulk.PartJob(n, runtime_url, catalog.team.tenant_id, path, "listener", part, 40, 730, True)
        for n, part in enumerate(parts)
    ]
    reports: list[bulk.Report] = []
    totals = bulk.Totals()
    failures = bulk.run_parts(jobs, lambda report, _: reports.append(report), totals)
    assert failures == []
    assert (totals.accepted, totals.duplicates, totals.rejected, totals.lines_read) == (300, 1, 1, 303)
    assert totals.position == path.stat().st_size
    refused = [r for report in reports for r in report.rejected]
    assert refused == [{"index": 151, "error": refused[0]["error"], "record": "{broken"}]
    with psycopg.connect(owner_url) as conn:
        stored = conn.execute("SELECT count(*) FROM listener_events WHERE tenant_id = %s", (catalog.team.tenant_id,))
        assert stored.fetchone() == (300,)


def read_all(path: Path, fmt: str) -> tuple[dict[int, Any], dict[int, str], int]:
    """Every record of a file as the import reads it: events by line, refusals by line, lines read."""
    source = bulk.Source(path, fmt, "listener")
    try:
        items: dict[int, Any] = {}
        refused: dict[int, str] = {}
        for block in source.blocks():
            parsed, broken = source.parse(block)
            items.update(parsed)
            refused.update((r["index"], r["error"]) for r in broken)
        return items, refused, source.lines_read
    finally:
        source.close()


def test_reader_edge_cases(tmp_path: Path) -> None:
    bom = tmp_path / "bom.ndjson"
    bom.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\n  \n{"b": 2}')  # a byte order mark, CRLF, no final newline
    assert read_all(bom, "ndjson") == ({1: {"a": 1}, 4: {"b": 2}}, {}, 4)
    long = tmp_path / "long.ndjson"
    long.write_bytes(b'{"a": 1}\n' + b"x" * (3 * bulk.MAX_LINE) + b'\n{"b": 2}\n')
    assert read_all(long, "ndjson") == ({1: {"a": 1}, 3: {"b": 2}}, {2: "the line is longer than 1,048,576 bytes"}, 3)
    array = tmp_path / "events.json"
    array.write_text('[{"a": 1}]')
    with pytest.raises(bulk.BadInput, match="JSON array"):
        bulk.Source(array, bulk.detect_format(array, None), "listener")
    rows = tmp_path / "rows.csv"
    rows.write_bytes(
        b"episode_id,listener_id,event_type,occurred_at\n"
        b"e,l,play,t\n"
        b'"x"y,l,play,t\n'  # bad quoting: that row only is refused
        b"e,l\xff,play,t\n"  # not UTF-8
        b"e,l2,play,t\n"
    )
    items, refused, lines = read_all(rows, "csv")
    assert sorted(items) == [2, 5] and lines == 5
    assert refused[3].startswith("not a valid CSV row") and refused[4] == "the row is not valid UTF-8"
    gzipped = tmp_path / "events.ndjson.gz"
    gzipped.write_bytes(gzip.compress(b'{"a": 1}\n'))
    assert bulk.detect_format(gzipped, None) == "ndjson"
    assert read_all(gzipped, "ndjson")[0] == {1: {"a": 1}}


@pytest.mark.parametrize(
    "text_form",
    [
        "0f3c1f1e-8a3b-4c55-9d2f-6f0e3b7a9c10",
        "0F3C1F1E-8A3B-4C55-9D2F-6F0E3B7A9C10",
        "{0f3c1f1e-8a3b-4c55-9d2f-6f0e3b7a9c10}",
        "urn:uuid:0f3c1f1e-8a3b-4c55-9d2f-6f0e3b7a9c10",
        "0f3c1f1e8a3b4c559d2f6f0e3b7a9c10",
        "0f3c1f1e8a3b4c559d2f6f0e3b7a9c10----",
        "0f3c1f1e-8a3b-4c55-9d2f-6f0e3b7a9c1g",
        "0f3c1f1e-8a3b-4c55-9d2f-6f0e3b7a9c1",
        "1_3c1f1e-8a3b-4c55-9d2f-6f0e3b7a9c10",
        "",
    ],
)
def test_fast_uuid_parses_exactly_like_uuid(text_form: str) -> None:
    """The validation's fast path for canonical ids answers what ``uuid.UUID`` answers, or fails as it does."""
    try:
        expected: Any = uuid.UUID(text_form)
    except ValueError:
        with pytest.raises(ValueError):
            fast_uuid(text_form)
        return
    parsed = fast_uuid(text_form)
    assert parsed == expected and hash(parsed) == hash(expected) and str(parsed) == str(expected)
    assert parsed.is_safe == expected.is_safe and parsed.version == expected.version
