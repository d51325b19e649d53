"""Bulk import of events from a file (``castmetrics events import``): NDJSON or CSV, streamed.

The file is read in batches, never whole. Each batch is validated by the same code as the ingestion
API (``validation.Checker``) and written by the same COPY path (``service.store``) in a transaction
of its own, so an import stopped half-way keeps the batches it committed and a re-run counts them as
duplicates. Reading and validating the next batch overlaps the database's work on the current one:
the reader is an asyncio task that yields to the writer every hundred records, and two batches are
in flight at once. A large uncompressed NDJSON file can also be cut into parts at line ends, each
imported by a worker process of its own (``run_parts``: validation is pure Python, so one process
uses one core). Every refused record is reported by its line in the file (1-based; a CSV header is
line 1).
"""

from __future__ import annotations

import asyncio
import csv
import gc
import gzip
import io
import multiprocessing
import queue
import sys
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
from sqlalchemy.exc import DBAPIError

from castmetrics.db.session import Database
from castmetrics.events import service, validation
from castmetrics.tenancy.models import Tenant

FORMATS = ("ndjson", "csv")
EXTENSIONS = {".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson", ".csv": "csv"}
REQUIRED = {
    "listener": ("episode_id", "listener_id", "event_type", "occurred_at"),
    "attribution": ("campaign_id", "listener_id", "attribution_type", "occurred_at"),
}
FIELDS = {"listener": validation.LISTENER_FIELDS, "attribution": validation.ATTRIBUTION_FIELDS}
JSON_COLUMNS = frozenset({"event_data", "attribution_data"})
BLOCK = 1 << 20  # bytes read at a time
MIN_PART = 32 << 20  # bytes per worker process, at least
MAX_LINE = 1 << 20  # an NDJSON line longer than this is refused unread (an event is at most ~10 kB)
SLICE = 100  # records validated between two turns of the writer
CSV_BLOCK = 5000  # CSV records read at a time


class BadInput(ValueError):
    """The file cannot be imported at all (unreadable, unknown format, bad CSV header): nothing is written."""


class ReadFailed(Exception):
    """Reading the file failed part-way (an I/O error, a truncated gzip file); committed batches stay."""


def detect_format(path: Path, given: str | None) -> str:
    """``given``, else the format the file name says (``.gz`` looked through)."""
    if given is not None:
        if given not in FORMATS:
            raise BadInput(f"--format must be ndjson or csv (got {given!r})")
        return given
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    found = EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if found is None:
        raise BadInput(f"cannot tell the format of {path.name} from its extension: pass --format ndjson or csv")
    return found


@dataclass(frozen=True)
class Part:
    """A byte range of an uncompressed NDJSON file, cut at line ends, and the number of its first line."""

    start: int
    end: int
    first_line: int


def plan_parts(path: Path, jobs: int) -> list[Part]:
    """Up to ``jobs`` parts of about equal size (fewer for a small file: each holds ``MIN_PART`` bytes)."""
    size = path.stat().st_size
    count = max(1, min(jobs, size // MIN_PART))
    cuts = [0]
    with path.open("rb") as file:
        for k in range(1, count):
            file.seek(max(cuts[-1], size * k // count))
            file.readline()  # to the end of the line the cut falls in
            cuts.append(file.tell())
        cuts.append(size)
        firsts, lines, done = [1], 0, 0
        file.seek(0)
        for cut in cuts[1:-1]:
            while done < cut:
                block = file.read(min(BLOCK, cut - done))
                lines += block.count(b"\n")
                done += len(block)
            firsts.append(lines + 1)
    return [Part(cuts[k], cuts[k + 1], firsts[k]) for k in range(count) if cuts[k] < cuts[k + 1]]


class Source:
    """An opened input file (or one ``Part`` of it): yields its records with their line numbers and
    turns them into events."""

    def __init__(self, path: Path, fmt: str, kind: str, part: Part | None = None) -> None:
        self.path = path
        self.format = fmt
        self.kind = kind
        self.lines_read = 0
        self.part = part
        try:
            self._file = path.open("rb")
            self.size = path.stat().st_size
            if part is not None:
                self._file.seek(part.start)
        except OSError as exc:
            raise BadInput(f"cannot read {path}: {exc.strerror or exc}") from None
        self._stream: io.BufferedReader | gzip.GzipFile = self._file
        if path.suffix.lower() == ".gz":
            self._stream = gzip.GzipFile(fileobj=self._file)
        self._header: list[str] = []
        self._bad_utf8: set[int] = set()  # CSV lines that are not valid UTF-8
        self._bad_rows: set[int] = set()  # CSV records spanning such a line
        self._csv: Any = None
        try:
            if fmt == "csv":
                self._open_csv()
            # (Peeking also reads a gzip header: a file that is not gzip is refused here.)
            elif part is None and self._stream.peek(64).lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"[":
                raise BadInput(
                    f"{path.name} holds a JSON array: import NDJSON, one event object per line "
                    f"(for example: jq -c '.[]' {path.name} > events.ndjson)"
                )
        except (OSError, EOFError) as exc:  # a damaged gzip file, a read error
            self.close()
            raise BadInput(f"cannot read {path}: {exc}") from None
        except BadInput:
            self.close()
            raise

    def close(self) -> None:
        self._stream.close()
        self._file.close()

    @property
    def position(self) -> int:
        """Bytes of the file read so far (compressed bytes for a gzip file)."""
        try:
            return self._file.tell()
        except (OSError, ValueError):
            return 0

    # --- CSV -------------------------------------------------------------------------------------

    def _text_lines(self) -> Iterator[str]:
        for number, raw in enumerate(self._stream, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("utf-8", "surrogateescape")
                self._bad_utf8.add(number)
            if number == 1 and text.startswith("\ufeff"):
                text = text[1:]  # a byte order mark, as spreadsheets write
            yield text

    def _open_csv(self) -> None:
        self._csv = csv.reader(self._text_lines(), strict=True)
        try:
            header = next(self._csv)
        except StopIteration:
            raise BadInput(f"{self.path.name} is empty: a CSV file starts with a header row") from None
        except csv.Error as exc:
            raise BadInput(f"the CSV header of {self.path.name} cannot be read: {exc}") from None
        if self._bad_utf8:
            raise BadInput("the CSV header is not valid UTF-8")
        header = [name.strip() for name in header]
        allowed = FIELDS[self.kind]
        unknown = [name for name in header if name not in allowed]
        if unknown:
            raise BadInput(
                f"the CSV header names unknown column(s) {', '.join(map(repr, unknown))} for {self.kind} events "
                f"(columns: {', '.join(sorted(allowed))})"
            )
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise BadInput(f"the CSV header repeats column(s) {', '.join(map(repr, repeated))}")
        missing = [name for name in REQUIRED[self.kind] if name not in header]
        if missing:
            raise BadInput(f"the CSV header lacks the column(s) {', '.join(map(repr, missing))}")
        self._header = header
        self.lines_read = self._csv.line_num

    def _csv_blocks(self) -> Iterator[list[tuple[int, Any]]]:
        reader = self._csv
        block: list[tuple[int, Any]] = []
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                self.lines_read = reader.line_num
                block.append((start, BadRecord(f"not a valid CSV row: {exc}")))
                continue
            end = self.lines_read = reader.line_num
            if not cells:
                continue  # a blank line
            if self._bad_utf8 and any(n in self._bad_utf8 for n in range(start, end + 1)):
                self._bad_rows.add(start)
            block.append((start, cells))
            if len(block) == CSV_BLOCK:
                yield block
                block = []
        if block:
            yield block

    def _csv_item(self, line: int, cells: list[str]) -> dict[str, Any]:
        if line in self._bad_rows:
            raise validation.ItemError("the row is not valid UTF-8")
        header = self._header
        if len(cells) != len(header):
            raise validation.ItemError(f"the row has {len(cells)} cells, the header {len(header)}")
        item: dict[str, Any] = {}
        for name, cell in zip(header, cells, strict=True):
            if not cell:
                continue  # an empty cell: the field is absent
            if name in JSON_COLUMNS:
                try:
                    item[name] = orjson.loads(cell)
                except orjson.JSONDecodeError as exc:
                    raise validation.ItemError(f"{name} is not valid JSON: {exc.msg}") from None
            else:
                item[name] = cell
        return item

    # --- NDJSON ----------------------------------------------------------------------------------

    def _ndjson_blocks(self) -> Iterator[list[tuple[int, Any]]]:
        first = 1  # the number of the next line to complete
        rest = b""
        skipping = False  # inside a line too long to be an event
        read: Callable[[int], bytes] = self._stream.read
        if self.part is not None:  # the part's bytes only
            first, left = self.part.first_line, self.part.end - self.part.start

            def read_part(size: int) -> bytes:
                nonlocal left
                data = self._stream.read(min(size, left))
                left -= len(data)
                return data

            read = read_part
        if (block := read(BLOCK)).startswith(b"\xef\xbb\xbf"):
            block = block[3:]  # a byte order mark
        while block:
            if skipping:
                end = block.find(b"\n")
                block, skipping = (b"", True) if end < 0 else (block[end + 1 :], False)
                first += not skipping
            lines = (rest + block).split(b"\n") if rest else block.split(b"\n")
            rest = lines.pop()
            if lines:
                self.lines_read = first + len(lines) - 1
                yield [(n, line) for n, line in enumerate(lines, first) if line and not line.isspace()]
                first += len(lines)
            if len(rest) > MAX_LINE:
                yield [(first, BadRecord(f"the line is longer than {MAX_LINE:,} bytes"))]
                rest, skipping = b"", True
            block = read(BLOCK)
        if rest or skipping:
            self.lines_read = first
            if rest and not rest.isspace():
                yield [(first, rest)]

    # --- both ------------------------------------------------------------------------------------

    def blocks(self) -> Iterator[list[tuple[int, Any]]]:
        """Lists of ``(line number, record)``, every record that is not a blank line, in file order."""
        return self._csv_blocks() if self.format == "csv" else self._ndjson_blocks()

    def parse(self, records: list[tuple[int, Any]]) -> tuple[list[tuple[int, Any]], list[dict[str, Any]]]:
        """The records as ``(line, event object)`` items, and those refused before validation."""
        items: list[tuple[int, Any]] = []
        broken: list[dict[str, Any]] = []
        if self.format == "ndjson":
            loads, decode_error, append = orjson.loads, orjson.JSONDecodeError, items.append
            for line, raw in records:
                try:
                    append((line, loads(raw)))
                except decode_error as exc:
                    reason = raw.reason if isinstance(raw, BadRecord) else f"not valid JSON: {exc.msg}"
                    broken.append({"index": line, "error": reason})
            return items, broken
        for line, cells in records:
            if isinstance(cells, BadRecord):
                broken.append({"index": line, "error": cells.reason})
                continue
            try:
                items.append((line, self._csv_item(line, cells)))
            except validation.ItemError as exc:
                broken.append({"index": line, "error": str(exc)})
        return items, broken

    def text_of(self, record: Any) -> Any:
        """A record as the rejects file shows it: the line (NDJSON) or the row by column (CSV)."""
        if isinstance(record, bytes):
            return record.decode("utf-8", "replace")
        if isinstance(record, BadRecord):
            return None
        return dict(zip(self._header, record, strict=False))


@dataclass(frozen=True)
class BadRecord:
    """A record refused as it was read (a CSV row the csv module cannot read, an overlong line)."""

    reason: str


@dataclass
class Batch:
    """One batch read and validated, waiting for its transaction."""

    checked: validation.Validated
    broken: list[dict[str, Any]]
    records: list[tuple[int, Any]] | None  # kept only for the rejects file
    size: int  # records in the batch
    first_line: int
    last_line: int
    position: int  # bytes of the file read once the batch was complete


@dataclass
class Report:
    """One committed batch as the import's caller sees it."""

    size: int  # records
    accepted: int
    duplicates: int
    # {"index": line, "error": reason}, with "record" (``Source.text_of``) when records are kept
    rejected: list[dict[str, Any]]
    done: int  # bytes of its part of the file read once the batch was complete
    last_line: int


@dataclass
class Totals:
    """What the import did so far: counts of committed batches only."""

    lines_read: int = 0
    records: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    last_line: int = 0  # the last line of the last batch committed in file order (one process)
    position: int = 0  # bytes of the file processed

    def add(self, report: Report) -> None:
        self.batches += 1
        self.records += report.size
        self.accepted += report.accepted
        self.duplicates += report.duplicates
        self.rejected += len(report.rejected)
        self.last_line = report.last_line
        self.lines_read = max(self.lines_read, report.last_line)


OnBatch = Callable[[Report, Totals], None]
RETRIED = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


class _Builder:
    """The batch being read: records are validated slice by slice as they come."""

    def __init__(self, source: Source, tenant_id: uuid.UUID, retention_days: int, keep_records: bool) -> None:
        self.source = source
        self.checker = validation.Checker(source.kind, tenant_id, service.accepted_range(retention_days))
        self.broken: list[dict[str, Any]] = []
        self.records: list[tuple[int, Any]] | None = [] if keep_records else None
        self.size = 0
        self.first_line = 0

    def add(self, piece: list[tuple[int, Any]]) -> None:
        if not self.size:
            self.first_line = piece[0][0]
        self.size += len(piece)
        with validation.collector_paused():  # the parsed items die unscanned
            items, refused = self.source.parse(piece)
            self.checker.feed(items)
            del items
        if refused:
            self.broken.extend(refused)
        if self.records is not None:
            self.records.extend(piece)

    def batch(self, last_line: int) -> Batch:
        return Batch(
            self.checker.result,
            self.broken,
            self.records,
            self.size,
            self.first_line,
            last_line,
            self.source.position,
        )


async def _produce(
    source: Source,
    tenant_id: uuid.UUID,
    *,
    batch_size: int,
    retention_days: int,
    keep_records: bool,
    queue: asyncio.Queue[Batch | BaseException | None],
) -> None:
    try:
        builder = _Builder(source, tenant_id, retention_days, keep_records)
        for block in source.blocks():
            offset = 0
            while offset < len(block):
                piece = block[offset : offset + min(SLICE, batch_size - builder.size)]
                offset += len(piece)
                builder.add(piece)
                if builder.size == batch_size:
                    await queue.put(builder.batch(piece[-1][0]))
                    builder = _Builder(source, tenant_id, retention_days, keep_records)
                await asyncio.sleep(0)  # let the writer answer the database
        if builder.size:
            await queue.put(builder.batch(source.lines_read))
    except asyncio.CancelledError:
        raise
    except (OSError, EOFError, csv.Error) as exc:  # handed to the writer, which raises it
        await queue.put(ReadFailed(f"reading {source.path} failed after line {source.lines_read}: {exc}"))
        return
    except Exception as exc:
        await queue.put(exc)
        return
    await queue.put(None)


async def _store(runtime: Database, tenant: Tenant, kind: str, batch: Batch) -> service.IngestResult:
    """One batch in one transaction; retried when it lost a deadlock to a concurrent batch of the same
    import (two batches repeating the same events in opposite orders), which rolled it back whole."""
    for attempt in range(1, 4):
        try:
            async with runtime.tenant_transaction(tenant.id) as session:
                return await service.store(
                    session, tenant, kind, batch.checked, db=runtime, enforce_limits=False, pre_rejected=batch.broken
                )
        except (DBAPIError, psycopg.Error) as exc:  # the COPY runs on the driver's cursor: unwrapped errors
            if attempt == 3 or not isinstance(exc.orig if isinstance(exc, DBAPIError) else exc, RETRIED):
                raise
    raise AssertionError("unreachable")


async def run(
    source: Source,
    runtime: Database,
    tenant: Tenant,
    *,
    batch_size: int,
    retention_days: int,
    concurrency: int = 2,
    keep_records: bool = False,
    on_batch: OnBatch | None = None,
    totals: Totals | None = None,
) -> Totals:
    """Import every record of ``source`` for ``tenant`` as the runtime role, one transaction per
    batch, ``concurrency`` batches in flight (answered in file order); counts usage but refuses
    nothing for quota or rate (the operator's import). ``totals`` (updated as batches commit) tells
    how far an import that failed got. ``runtime``'s pool needs ``concurrency + 1`` connections."""
    totals = totals if totals is not None else Totals()
    queue: asyncio.Queue[Batch | BaseException | None] = asyncio.Queue(maxsize=concurrency)
    producer = asyncio.create_task(
        _produce(
            source,
            tenant.id,
            batch_size=batch_size,
            retention_days=retention_days,
            keep_records=keep_records,
            queue=queue,
        )
    )
    in_flight: deque[tuple[Batch, asyncio.Task[service.IngestResult]]] = deque()

    start = source.part.start if source.part is not None else 0

    def account(batch: Batch, result: service.IngestResult) -> None:
        rejected = result.rejected
        if rejected and batch.records is not None:
            records = dict(batch.records)
            rejected = [{**r, "record": source.text_of(records.get(r["index"]))} for r in rejected]
        report = Report(
            batch.size, result.accepted, result.duplicates, rejected, batch.position - start, batch.last_line
        )
        totals.add(report)
        totals.position = report.done
        if on_batch is not None:
            on_batch(report, totals)

    try:
        while True:
            batch = await queue.get()
            if batch is None:
                break
            if isinstance(batch, BaseException):
                raise batch
            in_flight.append((batch, asyncio.create_task(_store(runtime, tenant, source.kind, batch))))
            if len(in_flight) >= concurrency:
                done, task = in_flight.popleft()
                account(done, await task)
        while in_flight:
            done, task = in_flight.popleft()
            account(done, await task)
        totals.lines_read = source.lines_read
        totals.position = source.position - start
        return totals
    finally:
        if not producer.done():
            producer.cancel()
        # Batches already sent finish (commit or fail) before the error is reported.
        await asyncio.gather(producer, *(task for _, task in in_flight), return_exceptions=True)


# --- several processes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartJob:
    """What a worker process needs to import one part of a file."""

    index: int
    runtime_url: str
    tenant_id: uuid.UUID
    path: Path
    kind: str
    part: Part
    batch_size: int
    retention_days: int
    keep_records: bool


def _import_part(job: PartJob, messages: Any) -> None:
    """A worker process: imports its part of the file, reporting each committed batch, then how it ended."""
    gc.freeze()
    gc.disable()  # as in the single-process import: the batches make no reference cycles

    async def work() -> int:
        runtime = Database(job.runtime_url, pool_size=2, max_overflow=1, application_name="castmetrics-import")
        source = Source(job.path, "ndjson", job.kind, job.part)
        try:
            async with runtime.tenant_transaction(job.tenant_id) as session:
                tenant = await session.get_one(Tenant, job.tenant_id)

            def report(batch: Report, totals: Totals) -> None:
                messages.put(("batch", job.index, batch))
                if totals.batches % 20 == 0:
                    gc.collect()

            totals = await run(
                source,
                runtime,
                tenant,
                batch_size=job.batch_size,
                retention_days=job.retention_days,
                keep_records=job.keep_records,
                on_batch=report,
            )
            return totals.lines_read
        finally:
            source.close()
            await runtime.dispose()

    try:
        lines_read = asyncio.run(work())
    except Exception as exc:  # the parent reports it; batches committed before stay
        messages.put(("failed", job.index, f"{type(exc).__name__}: {exc}".splitlines()[0]))
        return
    messages.put(("done", job.index, lines_read))


def run_parts(jobs: list[PartJob], on_batch: OnBatch | None = None, totals: Totals | None = None) -> list[str]:
    """Import the parts of a file in one worker process each (their batches answered as they commit);
    answers the failures, one line per part that stopped early. Call it outside any event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # as it should be: a forked child could not start its own loop
    else:
        raise RuntimeError("run_parts starts worker processes: call it outside an event loop")
    totals = totals if totals is not None else Totals()
    # Forked workers start at once with everything imported; elsewhere they start afresh.
    context = multiprocessing.get_context("fork") if sys.platform == "linux" else multiprocessing.get_context("spawn")
    messages = context.Queue()
    workers = [context.Process(target=_import_part, args=(job, messages), daemon=True) for job in jobs]
    for worker in workers:
        worker.start()
    done = [0] * len(jobs)
    running = set(range(len(jobs)))
    failures: list[str] = []
    try:
        while running:
            try:
                kind, index, payload = messages.get(timeout=0.5)
            except queue.Empty:
                for index in sorted(running):  # a worker that died without a word (killed, out of memory)
                    if workers[index].exitcode not in (None, 0) and messages.empty():
                        running.discard(index)
                        failures.append(f"part {index + 1}: the worker process ended ({workers[index].exitcode})")
                continue
            if kind == "batch":
                done[index] = payload.done
                totals.add(payload)
                totals.position = sum(done)
                if on_batch is not None:
                    on_batch(payload, totals)
                continue
            running.discard(index)
            if kind == "failed":
                failures.append(f"part {index + 1} (from line {jobs[index].part.first_line:,}): {payload}")
            else:
                totals.lines_read = max(totals.lines_read, payload)
                done[index] = jobs[index].part.end - jobs[index].part.start
        totals.position = sum(done)
        return failures
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()


def open_text(path: Path) -> io.TextIOWrapper:
    """The rejects file, created (or emptied) before the import starts."""
    try:
        return path.open("w", encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from None
