"""The dashboard's session and form protection.

The session cookie (HttpOnly, SameSite=Lax, Secure when the request came over HTTPS) carries the API's
own token pair: the 30-minute access token the pages call the API with, and the refresh token that
renews it, so signing out revokes the login server-side like ``/v1/auth/logout`` does. Forms carry a CSRF
token in a hidden input: an HMAC, under the server's secret key, of a random value kept in its own
HttpOnly cookie (the signed double-submit pattern); a cross-site form can neither read nor forge it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cachetools import TTLCache
from fastapi import Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from castmetrics.auth import tokens
from castmetrics.auth.dependencies import settings_of
from castmetrics.errors import DomainError
from castmetrics.http.deps import get_database
from castmetrics.identity import service as identity
from castmetrics.identity.schemas import TokenPair
from castmetrics.web.api import Api, ApiError

SESSION_COOKIE = "cm_session"
CSRF_COOKIE = "cm_csrf"
ZONE_COOKIE = "cm_tz"
CSRF_FIELD = "csrf_token"
MAX_FORM_FIELD = 10_000


class LoginRequired(Exception):
    """No valid session: the visitor is sent to the login page (and back afterwards)."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageError(Exception):
    """A page that cannot be shown: rendered as an error page with this status."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def page_error(error: ApiError) -> PageError:
    titles = {403: "Not allowed", 404: "Not found", 409: "Conflict", 402: "Plan limit reached"}
    return PageError(error.status, titles.get(error.status, "Something went wrong"), error.detail)


def secure_cookies(request: Request) -> bool:
    """Secure over HTTPS: the request's own scheme (a trusted proxy's X-Forwarded-Proto counts), or a
    public address that is https (so a proxy left out of the trusted list cannot make them plain)."""
    return request.url.scheme == "https" or settings_of(request).public_url.startswith("https://")


def cookie_name(request: Request, name: str) -> str:
    """Over HTTPS the ``__Host-`` prefix: the browser then only accepts the cookie Secure, for this host and
    path ``/``, so a sibling subdomain cannot plant one (a CSRF nonce of its choosing, say)."""
    return f"__Host-{name}" if secure_cookies(request) else name


def cookie(request: Request, name: str) -> str:
    return request.cookies.get(cookie_name(request, name), "")


# --- CSRF ------------------------------------------------------------------------------------------


def _csrf_digest(request: Request, nonce: str) -> str:
    """The form token: the nonce bound to the visitor's login session (none before signing in), so a token
    obtained in another session, or a nonce planted in this browser, is worthless here."""
    secret = settings_of(request).secret_key.get_secret_value()
    access, _, _ = cookie(request, SESSION_COOKIE).partition("|")
    session_id = tokens.access_token_session(secret, access) if access else None
    message = f"dashboard-csrf:{nonce}:{session_id or ''}"
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> str:
    """The token for this visitor's forms; a new nonce is made (and set by ``apply_cookies``) if needed."""
    nonce = getattr(request.state, "csrf_nonce", None) or cookie(request, CSRF_COOKIE)
    if not (16 <= len(nonce) <= 64):
        nonce = secrets.token_urlsafe(24)
        request.state.csrf_nonce = nonce
    return _csrf_digest(request, nonce)


def rotate_csrf(request: Request) -> None:
    """A fresh nonce (at sign-in and sign-out), so a token seen before the login is worthless after it."""
    request.state.csrf_nonce = secrets.token_urlsafe(24)


async def checked_form(request: Request) -> FormData:
    """The posted form, once its CSRF token is checked (403 page otherwise)."""
    form = await request.form(max_files=0, max_fields=50)
    nonce = cookie(request, CSRF_COOKIE)
    sent = form.get(CSRF_FIELD)
    if not nonce or not isinstance(sent, str) or not hmac.compare_digest(sent, _csrf_digest(request, nonce)):
        detail = "The form was too old or came from another site. Reload the page and try again."
        raise PageError(403, "Form expired", detail)
    for value in form.values():
        if isinstance(value, str) and len(value) > MAX_FORM_FIELD:
            raise PageError(413, "Too long", "A field of the form is too long.")
    return form


def field_of(form: FormData, name: str, default: str = "") -> str:
    value = form.get(name, default)
    return value.strip() if isinstance(value, str) else default


# --- session ---------------------------------------------------------------------------------------


def _session_value(pair: TokenPair) -> str:
    return f"{pair.access_token}|{pair.refresh_token}"


def set_session(request: Request, response: Response, pair: TokenPair) -> None:
    settings = settings_of(request)
    response.set_cookie(
        cookie_name(request, SESSION_COOKIE), _session_value(pair), max_age=settings.refresh_token_days * 86400,
        path="/", httponly=True, samesite="lax", secure=secure_cookies(request),
    )  # fmt: skip


def clear_session(request: Request, response: Response) -> None:
    response.delete_cookie(cookie_name(request, SESSION_COOKIE), path="/", secure=secure_cookies(request))


def apply_cookies(request: Request, response: Response) -> Response:
    """Set what this request decided: a new CSRF nonce, a renewed session."""
    nonce = getattr(request.state, "csrf_nonce", None)
    if nonce:
        response.set_cookie(
            cookie_name(request, CSRF_COOKIE), nonce, path="/", httponly=True, samesite="lax",
            secure=secure_cookies(request),
        )  # fmt: skip
    renewed = getattr(request.state, "renewed_session", None)
    if isinstance(renewed, TokenPair):
        set_session(request, response, renewed)
    return response


def zone_named(name: str | None) -> ZoneInfo | None:
    if not name or len(name) > 64:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@dataclass
class Viewer:
    """Who is looking at the dashboard: the API's ``/v1/me`` answer, their API handle and time zone."""

    request: Request
    api: Api
    me: dict[str, Any]
    zone: ZoneInfo
    permissions: frozenset[str] = field(default_factory=frozenset)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def csrf(self) -> str:
        return csrf_token(self.request)


# Pages loaded at once with the same expired session (two tabs, a reload) must not each use the refresh
# token: the second use would look like theft to the API, which then revokes the whole login. So within
# a process, one renewal per refresh token is made and its result shared for a few seconds.
_RENEWED: TTLCache[str, TokenPair] = TTLCache(maxsize=10_000, ttl=15)
_RENEWING: dict[str, asyncio.Lock] = {}


async def _renew(request: Request, refresh: str) -> TokenPair:
    key = hashlib.sha256(refresh.encode()).hexdigest()
    lock = _RENEWING.setdefault(key, asyncio.Lock())
    try:
        async with lock:
            pair = _RENEWED.get(key)
            if pair is None:
                pair = await identity.refresh(get_database(request), settings_of(request), refresh)
                _RENEWED[key] = pair
            return pair
    finally:
        if not lock.locked():
            _RENEWING.pop(key, None)


async def _valid_pair(request: Request) -> tuple[str, str] | None:
    raw = cookie(request, SESSION_COOKIE)
    access, _, refresh = raw.partition("|")
    if not access or not refresh:
        return None
    secret = settings_of(request).secret_key.get_secret_value()
    try:
        tokens.read_access_token(secret, access)
        return access, refresh
    except DomainError:
        pass
    try:  # the access token has expired: renew the pair once, like a client would
        pair = await _renew(request, refresh)
    except DomainError:
        return None
    request.state.renewed_session = pair
    return pair.access_token, pair.refresh_token


def _next_path(request: Request) -> str:
    if request.method != "GET":
        return "/"  # a form's target cannot be opened after signing in
    query = f"?{request.url.query}" if request.url.query else ""
    return f"{request.url.path}{query}"


async def has_session(request: Request) -> bool:
    return await _valid_pair(request) is not None


async def current_viewer(request: Request) -> Viewer:
    """Dependency of every signed-in page: the viewer, or a redirect to the login page."""
    pair = await _valid_pair(request)
    if pair is None:
        raise LoginRequired(_next_path(request))
    api = Api(request.app, pair[0])
    try:
        me = await api.get("/v1/me")
    except ApiError as exc:
        if exc.status == 401:
            raise LoginRequired(_next_path(request)) from None
        raise page_error(exc) from None
    zone = zone_named(cookie(request, ZONE_COOKIE)) or zone_named(me["tenant"].get("time_zone")) or ZoneInfo("UTC")
    return Viewer(request=request, api=api, me=me, zone=zone, permissions=frozenset(me["permissions"]))


current_viewer.permission = "dashboard session"  # type: ignore[attr-defined]
SignedIn = Annotated[Viewer, Depends(current_viewer)]


def login_url(next_path: str) -> str:
    return f"/login?next={quote(next_path, safe='')}" if next_path and next_path != "/" else "/login"


def safe_next(value: str | None) -> str:
    """Only a path of this site is a place to go back to after signing in (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or len(value) > 500:
        return "/"
    return value
