"""The local append-only spool: where recorded requests wait while the database is unreachable.

Each process appends to its own file (``prefix-<host>-<pid>-<start>.ndjson``), holding an exclusive
``flock`` on it while it lives. Replay takes files oldest first — the process's own and those left by
processes that died — writes them in order in chunks, and deletes a file once all of it is stored.
A replay interrupted half-way starts that file again: each record carries its id, so what was already
stored counts as a duplicate and every request is stored exactly once.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson
import structlog

log = structlog.get_logger(__name__)
CHUNK = 5_000


class Spool:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
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
        """Append ``records`` durably (written and fsynced before this returns)."""
        if not records:
            return
        handle = self._open()
        handle.write(b"".join(orjson.dumps(record) + b"\n" for record in records))
        handle.flush()
        os.fsync(handle.fileno())

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
