"""Dashboard routes. Until the dashboard pages exist, ``/`` leads to the interactive API docs."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/docs", status_code=307)
