"""CSV exports of analytics answers (``Accept: text/csv``), written row by row as they stream out, every
text cell defused against spreadsheet formulas (``http.spreadsheet``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from castmetrics.http.spreadsheet import cell

CSV = "text/csv"
CHUNK_ROWS = 1_000


def wants_csv(request: Request) -> bool:
    """True when the client asks for CSV (and prefers it to JSON, if it names both)."""
    accept = request.headers.get("accept", "").lower()
    if CSV not in accept:
        return False
    json_at = accept.find("application/json")
    return json_at < 0 or accept.find(CSV) < json_at


def _chunks(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for count, row in enumerate(rows, 1):
        writer.writerow([cell(value) for value in row])
        if count % CHUNK_ROWS == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def csv_response(name: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> StreamingResponse:
    return StreamingResponse(
        _chunks(header, rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="castmetrics-{name}.csv"'},
    )
