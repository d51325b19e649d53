"""Signing in and out, signing up, password reset, email verification and invitations, as pages.

These call the identity service directly (not the API in process), so the login throttle sees the
visitor's real address; every form is checked for its CSRF token first.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from castmetrics.auth.dependencies import principals_of, settings_of, usage_of
from castmetrics.errors import DomainError
from castmetrics.http.deps import get_database
from castmetrics.identity import service as identity
from castmetrics.identity.schemas import SignupIn
from castmetrics.web.session import (
    SESSION_COOKIE,
    ZONE_COOKIE,
    checked_form,
    clear_session,
    cookie,
    cookie_name,
    field_of,
    has_session,
    rotate_csrf,
    safe_next,
    secure_cookies,
    set_session,
    zone_named,
)
from castmetrics.web.templating import redirect, render

router = APIRouter()


def _client_addr(request: Request) -> str | None:
    return request.client.host if request.client else None


def _signed_in(request: Request, target: str, pair: Any, zone_name: str) -> Response:
    rotate_csrf(request)  # before the response is made, which sets the new nonce
    response = redirect(request, target)
    set_session(request, response, pair)
    if zone_named(zone_name) is not None:
        response.set_cookie(
            cookie_name(request, ZONE_COOKIE), zone_name, max_age=365 * 86400, path="/", httponly=True, samesite="lax",
            secure=secure_cookies(request),
        )  # fmt: skip
    return response


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        parts.append(f"{where.replace('_', ' ')}: {error['msg']}")
    return "; ".join(parts)


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:  # the query's name
    if next is None and cookie(request, SESSION_COOKIE) and await has_session(request):
        return redirect(request, "/")
    return render(request, "login.html", {"next": safe_next(next), "title": "Sign in"})


@router.post("/login")
async def login(request: Request) -> Response:
    form = await checked_form(request)
    email, password, next_path = field_of(form, "email"), str(form.get("password") or ""), field_of(form, "next")
    context = {"next": safe_next(next_path), "email": email, "title": "Sign in"}
    if not email or not password or len(email) > 320 or "\x00" in email + password:
        return render(request, "login.html", {**context, "error": "Enter your email and password."}, status=422)
    try:
        pair = await identity.login(
            get_database(request), settings_of(request), email, password, _client_addr(request), meter=usage_of(request)
        )
    except DomainError as exc:
        status = 429 if exc.code == "rate-limited" else 401
        return render(request, "login.html", {**context, "error": exc.detail}, status=status)
    return _signed_in(request, safe_next(next_path), pair, field_of(form, "tz"))


@router.post("/logout")
async def logout(request: Request) -> Response:
    await checked_form(request)
    _, _, refresh = cookie(request, SESSION_COOKIE).partition("|")
    if refresh:
        await identity.logout(get_database(request), refresh)
        principals_of(request).clear()
    rotate_csrf(request)
    response = redirect(request, "/login")
    clear_session(request, response)
    return response


@router.get("/signup")
async def signup_page(request: Request) -> Response:
    return render(request, "signup.html", {"title": "Create your network", "form": {}})


@router.post("/signup")
async def signup(request: Request) -> Response:
    form = await checked_form(request)
    values = {name: field_of(form, name) for name in ("tenant_name", "tenant_slug", "email", "name")}
    context: dict[str, Any] = {"title": "Create your network", "form": values}
    try:
        data = SignupIn(**values, password=str(form.get("password") or ""))
        _, _, pair = await identity.signup(get_database(request), settings_of(request), data)
    except ValidationError as exc:
        return render(request, "signup.html", {**context, "error": _validation_message(exc)}, status=422)
    except DomainError as exc:
        status = 409 if exc.code == "conflict" else 422
        return render(request, "signup.html", {**context, "error": exc.detail}, status=status)
    return _signed_in(request, "/?welcome=1", pair, field_of(form, "tz"))


@router.get("/forgot-password")
async def forgot_password_page(request: Request) -> Response:
    return render(request, "forgot_password.html", {"title": "Reset your password"})


@router.post("/forgot-password")
async def forgot_password(request: Request) -> Response:
    form = await checked_form(request)
    email = field_of(form, "email")
    if "@" not in email or len(email) > 320:
        context = {"title": "Reset your password", "error": "Enter the email address you sign in with."}
        return render(request, "forgot_password.html", context, status=422)
    await identity.request_password_reset(get_database(request), settings_of(request), email)
    # The same answer whether or not the address has an account: nothing is revealed.
    return render(request, "forgot_password.html", {"title": "Reset your password", "sent": True})


@router.get("/reset-password")
async def reset_password_page(request: Request, token: str = "") -> Response:
    return render(request, "reset_password.html", {"title": "Choose a new password", "token": token[:2000]})


@router.post("/reset-password")
async def reset_password(request: Request) -> Response:
    form = await checked_form(request)
    token, password = field_of(form, "token"), str(form.get("password") or "")
    context = {"title": "Choose a new password", "token": token}
    try:
        await identity.reset_password(get_database(request), settings_of(request), token, password)
    except DomainError as exc:
        return render(request, "reset_password.html", {**context, "error": exc.detail}, status=422)
    principals_of(request).clear()
    return render(request, "message.html", {"title": "Password changed", "detail": "Sign in with your new password."})


@router.get("/verify-email")
async def verify_email(request: Request, token: str = "") -> Response:
    try:
        user = await identity.verify_email(get_database(request), settings_of(request), token[:2000])
    except DomainError as exc:
        context = {"title": "This link does not work", "detail": f"{exc.detail}. Ask for a new one in Settings."}
        return render(request, "message.html", context, status=400)
    principals_of(request).forget_tenant(user.tenant_id)
    detail = f"Thank you: {user.email} is confirmed."
    return render(request, "message.html", {"title": "Email address confirmed", "detail": detail})


@router.get("/accept-invite")
async def accept_invite_page(request: Request, token: str = "") -> Response:
    return render(request, "accept_invite.html", {"title": "Join your team", "token": token[:2000]})


@router.post("/accept-invite")
async def accept_invite(request: Request) -> Response:
    form = await checked_form(request)
    token, password = field_of(form, "token"), str(form.get("password") or "")
    try:
        pair = await identity.accept_invite(get_database(request), settings_of(request), token, password)
    except DomainError as exc:
        context = {"title": "Join your team", "token": token, "error": exc.detail}
        return render(request, "accept_invite.html", context, status=422)
    return _signed_in(request, "/", pair, field_of(form, "tz"))
