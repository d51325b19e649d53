"""Rendering dashboard pages: the Jinja environment (autoescaped), its filters, and the page response."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from castmetrics.web.session import Viewer, apply_cookies, csrf_token

# The dashboard loads nothing from elsewhere and runs only its own script file.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
        "form-action 'self' https://checkout.stripe.com https://billing.stripe.com; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _parse_moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def moment(value: Any, zone: ZoneInfo | None = None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A stored instant shown in the viewer's zone (``—`` when absent)."""
    at = _parse_moment(value)
    if at is None:
        return "—"
    if at.tzinfo is not None and zone is not None:
        at = at.astimezone(zone)
    return at.strftime(fmt)


def day(value: Any) -> str:
    if isinstance(value, date):
        return value.isoformat()
    return str(value)[:10] if value else "—"


def integer(value: Any) -> str:
    if value is None:
        return "—"
    return f"{round(float(value)):,}"


def decimal(value: Any, places: int = 2) -> str:
    if value is None:
        return "—"
    return f"{float(value):,.{places}f}"


def percent(value: Any, places: int = 1) -> str:
    """A ratio (0.25) as a percentage (25.0%)."""
    if value is None:
        return "—"
    return f"{float(value) * 100:.{places}f}%"


def change(value: Any) -> Markup:
    """A period change (a ratio) with an arrow and a class for its colour."""
    if value is None:
        return Markup('<span class="change none">—</span>')
    ratio = float(value)
    kind, arrow = ("up", "▲") if ratio > 0 else ("down", "▼") if ratio < 0 else ("flat", "■")
    return Markup('<span class="change {}">{} {:+.1f}%</span>').format(kind, arrow, ratio * 100)


def money(value: Any, currency: str | None = None) -> str:
    if value is None:
        return "—"
    return f"{float(value):,.2f} {currency or ''}".strip()


environment = Environment(
    loader=PackageLoader("castmetrics.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters.update(
    {"moment": moment, "day": day, "integer": integer, "decimal": decimal, "percent": percent,
     "change": change, "money": money}
)  # fmt: skip


def render(
    request: Request, template: str, context: dict[str, Any], *, viewer: Viewer | None = None, status: int = 200
) -> HTMLResponse:
    """A page: the template with the viewer, its CSRF token and the current path, plus the cookies and
    security headers every page carries."""
    values = {"request": request, "viewer": viewer, "csrf": csrf_token(request), "path": request.url.path, **context}
    body = environment.get_template(template).render(values)
    response = HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)
    return apply_cookies(request, response)  # type: ignore[return-value]


def redirect(request: Request, url: str) -> RedirectResponse:
    """After a form: 303 See Other, so a reload does not post again."""
    response = RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})
    return apply_cookies(request, response)  # type: ignore[return-value]
