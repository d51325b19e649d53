"""The one list shape every route answers: ``{items, next_cursor}`` with ``limit`` and ``cursor``."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


Limit = Annotated[int, Query(ge=1, le=500, description="Page size, 1–500.")]
CursorParam = Annotated[str | None, Query(max_length=512, description="The `next_cursor` of the previous page.")]
