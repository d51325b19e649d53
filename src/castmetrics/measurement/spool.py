"""The local append-only spool: where recorded requests wait while the database is unreachable.

Each process appends to its own file (``prefix-<host>-<pid>-<start>.ndjson``), holding an exclusive
``flock`` on it while it lives. Replay takes files oldest first — the process's own and those left by
processes that died — writes them in order in chunks, and deletes a file once all of it is stored.
A replay interrupted half-way starts that file again: each record carries its id, so what was already
stored counts as a duplicate and every request is stored exactly once.

The spool is capped (``max_bytes``, all of the folder's spool files together): an append that would pass
the cap first makes room down to 90% of it, dropping the oldest ``expendable`` records (requests for a slug
that is no tenant's: they would never be stored), then the oldest of all, and says so with an error-level
log line and ``castmetrics_prefix_spool_dropped_total``. It trims the files it can lock: its own and those
of processes that died (a living process trims its own).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson
import structlog

from castmetrics.observability import PREFIX_SPOOL_DROPPED

log = structlog.get_logger(__name__)
CHUNK = 5_000
LOW_WATER = 0.9  # making room trims to this share of the cap, so the next appends do not trim again


def _never(record: Any) -> bool:
    return False


class Spool:
    def __init__(self, folder: Path, max_bytes: int | None = None, expendable: Callable[[Any], bool] = _never) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.expendable = expendable
        self._file: IO[bytes] | None = None
        self._path: Path | None = None

    def _open(self) -> IO[bytes]:
        if self._file is None:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            name = f"prefix-{socket.gethostname()}-{os.getpid()}-{time.time_ns()}.ndjson"
            # Created and locked under a temporary name, then renamed: another process's replay never
            # sees a spool file that is not locked by its living owner.
            staging = self.folder / f".{name}.tmp"
            handle = os.fdopen(os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._path = self.folder / name
            staging.rename(self._path)
            self._file = handle
        return self._file

    def append(self, records: list[Any]) -> None:
        """Append ``records`` durably (written and fsynced before this returns), within the cap."""
        if not records:
            return
        lines = [orjson.dumps(record) + b"\n" for record in records]
        if self.max_bytes is not None:
            lines = self._make_room(lines)
            if not lines:
                return
        handle = self._open()
        handle.write(b"".join(lines))
        handle.flush()
        os.fsync(handle.fileno())

    def size(self) -> int:
        """Bytes in the folder's spool files (every process's)."""
        if not self.folder.is_dir():
            return 0
        total = 0
        for path in self.folder.glob("prefix-*.ndjson"):
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                continue
        return total

    def _make_room(self, lines: list[bytes]) -> list[bytes]:
        """The new ``lines`` that still fit once older records are dropped to bring the spool under the
        cap: expendable ones first, oldest first, then any, oldest first; the new lines count as newest."""
        assert self.max_bytes is not None
        incoming = sum(len(line) for line in lines)
        over = self.size() + incoming - self.max_bytes
        if over <= 0:
            return lines
        need = over + self.max_bytes - int(self.max_bytes * LOW_WATER)
        self.rotate()  # our own file becomes one we may trim
        dropped = {True: 0, False: 0}  # by whether the record was expendable
        freed = 0
        for only_expendable in (True, False):
            for path in self.pending():
                if freed >= need:
                    break
                freed += self._trim(path, need - freed, only_expendable, dropped)
            kept: list[bytes] = []
            for line in lines:
                if freed < need and (not only_expendable or self._is_expendable(line)):
                    freed += len(line)
                    dropped[self._is_expendable(line)] += 1
                else:
                    kept.append(line)
            lines = kept
            if freed >= need:
                break
        PREFIX_SPOOL_DROPPED.labels("unknown").inc(dropped[True])
        PREFIX_SPOOL_DROPPED.labels("known").inc(dropped[False])
        log.error(
            "prefix.spool_full",
            max_bytes=self.max_bytes,
            dropped_unknown_tenant=dropped[True],
            dropped=dropped[False],
            detail="the database has been unreachable long enough to fill the spool: requests are being lost",
        )
        return lines

    def _is_expendable(self, line: bytes) -> bool:
        try:
            return bool(self.expendable(orjson.loads(line)))
        except (orjson.JSONDecodeError, IndexError, KeyError, TypeError):
            return True  # a torn line: replay skips it anyway

    def _trim(self, path: Path, want: int, only_expendable: bool, dropped: dict[bool, int]) -> int:
        """Drop up to about ``want`` bytes of the oldest (expendable) records of one spool file, rewriting
        it under its lock (a file another process holds is skipped); answers the bytes dropped."""
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            return 0
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # a living process still appends to it
            if os.fstat(handle.fileno()).st_nlink == 0:
                return 0
            staging = path.with_name(f".{path.name}.trim")
            freed = 0
            with os.fdopen(os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
                for line in handle:
                    expendable = self._is_expendable(line)
                    if freed < want and (expendable or not only_expendable):
                        freed += len(line)
                        dropped[expendable] += 1
                        continue
                    out.write(line)
                    if freed >= want:
                        break
                shutil.copyfileobj(handle, out)  # the rest, as it is
                out.flush()
                os.fsync(out.fileno())
                empty = out.tell() == 0
            if not freed:
                staging.unlink()
            elif empty:
                staging.unlink()
                path.unlink()
            else:
                staging.replace(path)  # the name (and so the order) stays; a replay waiting on it skips it
        return freed

    def rotate(self) -> None:
        """Close the current file: it becomes replayable, and new records start a new file."""
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
            self._path = None

    def pending(self) -> list[Path]:
        """Spool files not held by a living process, oldest first (by their start time)."""
        if not self.folder.is_dir():
            return []

        def started(path: Path) -> tuple[int, str]:
            stem = path.stem.rsplit("-", 1)
            return (int(stem[1]) if len(stem) == 2 and stem[1].isdigit() else 0, path.name)

        return sorted(
            (p for p in self.folder.glob("prefix-*.ndjson") if p != self._path),
            key=started,
        )

    def has_pending(self) -> bool:
        return bool(self.pending()) or self._file is not None

    @staticmethod
    def _chunks(handle: IO[bytes]) -> Iterator[list[Any]]:
        chunk: list[Any] = []
        for line in handle:
            if not line.strip():
                continue
            try:
                chunk.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                log.warning("spool.torn_line_skipped")  # a crash mid-write leaves at most one
                continue
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def dead_letter(self, records: list[Any]) -> None:
        """Keep records that cannot be stored for a reason other than an outage (for an operator)."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.folder / f"dead-{socket.gethostname()}-{os.getpid()}.ndjson"
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as handle:
            handle.write(b"".join(orjson.dumps(record) + b"\n" for record in records))

    async def replay(
        self, write: Callable[[list[Any]], Awaitable[None]], retryable: Callable[[BaseException], bool]
    ) -> int:
        """Write every pending file in order through ``write``; answers the records replayed. Stops
        at the first retryable failure (an outage), raising it and leaving the rest for next time; a
        file that fails otherwise is set aside as ``dead-…`` so it cannot block the spool forever."""
        self.rotate()
        replayed = 0
        for path in self.pending():
            try:
                handle = path.open("rb")
            except FileNotFoundError:
                continue  # replayed and removed by another process meanwhile
            with handle:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a living process still appends to it
                if os.fstat(handle.fileno()).st_nlink == 0:
                    continue  # removed by another process after we listed it
                try:
                    for chunk in self._chunks(handle):
                        await write(chunk)
                        replayed += len(chunk)
                except Exception as exc:
                    if retryable(exc):
                        raise
                    log.exception("spool.file_set_aside", file=path.name)
                    path.rename(path.with_name(f"dead-{path.name}"))
                    continue
                path.unlink(missing_ok=True)
            log.info("spool.replayed", file=path.name)
        return replayed
