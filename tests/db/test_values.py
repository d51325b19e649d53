"""``db.values``: multi-row VALUES lists of bound parameters."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from sqlalchemy import text

from castmetrics.db.session import Database
from castmetrics.db.values import values


async def test_a_values_list_reads_back_as_its_rows(owner_db: Database) -> None:
    rows = [(uuid.UUID(int=n), date(2026, 1, n), f"row {n}", None if n == 2 else n * 10) for n in (1, 2, 3)]
    listed, params = values(rows, ("uuid", "date", "text", "integer"))
    async with owner_db.transaction() as session:
        found = (await session.execute(text(f"SELECT * FROM (VALUES {listed}) AS v(a, b, c, d)"), params)).all()
    assert [tuple(row) for row in found] == rows


def test_a_row_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="row 1 has 1 values for 2 columns"):
        values([(1, 2), (3,)], ("integer", "integer"))
