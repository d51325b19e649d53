"""Settings: users and roles, API keys, feature flags, usage against quotas, and billing.

Each tab reads what the API lets the viewer read (its 403 is the 403 page) and shows a control only
when the viewer holds the permission of the API route it posts to; the API still checks every change.
A new API key is shown once, in the answer to the form that created it: never in a URL or cookie.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from castmetrics.web.api import ApiError
from castmetrics.web.pages.common import gather_api, uuid_or_404
from castmetrics.web.session import PageError, SignedIn, Viewer, checked_form, field_of, page_error
from castmetrics.web.templating import redirect, render

router = APIRouter()

# (path, label, the permission its page reads with)
TABS = (
    ("/settings/users", "Users & roles", "users:read"),
    ("/settings/api-keys", "API keys", "api_keys:read"),
    ("/settings/flags", "Feature flags", "feature_flags:read"),
    ("/settings/usage", "Usage", "tenant:read"),
    ("/settings/billing", "Billing", "tenant:read"),
)
SCOPES = (
    ("read", "Read everything you may read"),
    ("ingest", "Send listening events only"),
    ("admin", "Everything you may do"),
)
PAID_TIERS = (("pro", "Pro"), ("enterprise", "Enterprise"))
QUOTA_LABELS = {
    "users": "Active users",
    "podcasts": "Podcasts",
    "workflows": "Workflows",
    "events_per_month": "Events this month",
    "emails_per_day": "Workflow emails today",
}
FLAG_NAME = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
SHOWN_AGAIN = frozenset({400, 402, 409, 422})
NOTICES = {
    "roles": "The user's roles were changed.",
    "invited": "The invitation was sent.",
    "revoked": "The API key was revoked: it no longer works.",
    "flag": "The flag's value for your network was set.",
    "flag-default": "The flag follows the platform's default again.",
}


def _tabs(viewer: Viewer) -> list[tuple[str, str]]:
    return [(path, label) for path, label, permission in TABS if viewer.can(permission)]


def _render(
    request: Request, viewer: Viewer, template: str, title: str, context: dict[str, Any], *, status: int = 200
) -> Response:
    notice = NOTICES.get(request.query_params.get("notice") or "") if request.method == "GET" else None
    values = {"title": title, "tabs": _tabs(viewer), "notice": notice, **context}
    return render(request, template, values, viewer=viewer, status=status)


def _refused(exc: ApiError) -> str:
    """The message of a change the API refused with a status the page shows again."""
    if exc.status not in SHOWN_AGAIN:
        raise page_error(exc)
    return exc.detail


@router.get("/settings")
async def settings_home(request: Request, viewer: SignedIn) -> Response:
    first = _tabs(viewer)
    return redirect(request, first[0][0] if first else "/settings/users")


# --- users and roles -------------------------------------------------------------------------------


async def _no_items() -> list[Any]:
    return []


async def _users_page(
    request: Request,
    viewer: Viewer,
    *,
    error: str | None = None,
    status: int = 200,
    invite: dict[str, str] | None = None,
) -> Response:
    users, roles = await gather_api(
        viewer.api.all_items("/v1/users"),
        viewer.api.all_items("/v1/roles") if viewer.can("roles:read") else _no_items(),
    )
    role_ids = {role["name"]: role["id"] for role in roles}
    context = {
        "users": users,
        "roles": roles,
        "user_role_ids": {user["id"]: {role_ids.get(name) for name in user["roles"]} for user in users},
        "can_set_roles": viewer.can("users:update") and bool(roles),
        "can_invite": viewer.can("users:create"),
        "invite": invite or {},
        "error": error,
    }
    return _render(request, viewer, "settings_users.html", "Users & roles", context, status=status)


@router.get("/settings/users")
async def users_page(request: Request, viewer: SignedIn) -> Response:
    return await _users_page(request, viewer)


def _role_ids(values: list[Any]) -> list[str]:
    return [uuid_or_404(value, "role") for value in values if isinstance(value, str)]


@router.post("/settings/users/{user_id}/roles")
async def set_roles(request: Request, user_id: str, viewer: SignedIn) -> Response:
    form = await checked_form(request)
    uid = uuid_or_404(user_id, "user")
    role_ids = _role_ids(form.getlist("role_id"))
    try:
        await viewer.api.put(f"/v1/users/{uid}/roles", {"role_ids": role_ids})
    except ApiError as exc:
        return await _users_page(request, viewer, error=_refused(exc), status=exc.status)
    return redirect(request, "/settings/users?notice=roles")


@router.post("/settings/users/invite")
async def invite_user(request: Request, viewer: SignedIn) -> Response:
    form = await checked_form(request)
    values = {"email": field_of(form, "email"), "name": field_of(form, "name")}
    body = {**values, "role_ids": _role_ids(form.getlist("role_id"))}
    try:
        await viewer.api.post("/v1/users", body)
    except ApiError as exc:
        return await _users_page(request, viewer, error=_refused(exc), status=exc.status, invite=values)
    return redirect(request, "/settings/users?notice=invited")


# --- API keys --------------------------------------------------------------------------------------


async def _keys_page(
    request: Request,
    viewer: Viewer,
    *,
    new_key: dict[str, Any] | None = None,
    error: str | None = None,
    status: int = 200,
    form: dict[str, Any] | None = None,
) -> Response:
    [keys] = await gather_api(viewer.api.all_items("/v1/api-keys"))
    context = {
        "keys": keys,
        "scopes": SCOPES,
        "new_key": new_key,
        "can_create": viewer.can("api_keys:create"),
        "can_revoke": viewer.can("api_keys:delete"),
        "form": form or {"name": "", "scopes": ["read"]},
        "error": error,
    }
    return _render(request, viewer, "settings_api_keys.html", "API keys", context, status=status)


@router.get("/settings/api-keys")
async def keys_page(request: Request, viewer: SignedIn) -> Response:
    return await _keys_page(request, viewer)


@router.post("/settings/api-keys")
async def create_key(request: Request, viewer: SignedIn) -> Response:
    form = await checked_form(request)
    known = {scope for scope, _ in SCOPES}
    scopes = [value for value in form.getlist("scope") if isinstance(value, str) and value in known]
    values = {"name": field_of(form, "name"), "scopes": scopes}
    if not scopes and viewer.can("api_keys:create"):
        return await _keys_page(request, viewer, error="Choose at least one scope.", status=422, form=values)
    try:
        created = await viewer.api.post("/v1/api-keys", values)
    except ApiError as exc:
        return await _keys_page(request, viewer, error=_refused(exc), status=exc.status, form=values)
    # Shown in this answer only (no redirect): the API keeps just the key's hash.
    return await _keys_page(request, viewer, new_key=created, status=201)


@router.post("/settings/api-keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str, viewer: SignedIn) -> Response:
    await checked_form(request)
    kid = uuid_or_404(key_id, "API key")
    try:
        await viewer.api.delete(f"/v1/api-keys/{kid}")
    except ApiError as exc:
        return await _keys_page(request, viewer, error=_refused(exc), status=exc.status)
    return redirect(request, "/settings/api-keys?notice=revoked")


# --- feature flags ---------------------------------------------------------------------------------


async def _flags_page(request: Request, viewer: Viewer, *, error: str | None = None, status: int = 200) -> Response:
    [flags] = await gather_api(viewer.api.get("/v1/feature-flags"))
    context = {
        "flags": sorted(flags.items()),
        "can_set": viewer.can("feature_flags:update"),
        "can_clear": viewer.can("feature_flags:delete"),
        "error": error,
    }
    return _render(request, viewer, "settings_flags.html", "Feature flags", context, status=status)


@router.get("/settings/flags")
async def flags_page(request: Request, viewer: SignedIn) -> Response:
    return await _flags_page(request, viewer)


def _flag_name(name: str) -> str:
    if not FLAG_NAME.fullmatch(name):
        raise PageError(404, "Not found", "There is no such feature flag.")
    return name


@router.post("/settings/flags/{name}")
async def set_flag(request: Request, name: str, viewer: SignedIn) -> Response:
    form = await checked_form(request)
    flag = _flag_name(name)
    try:
        await viewer.api.put(f"/v1/feature-flags/{flag}", {"enabled": field_of(form, "enabled") == "true"})
    except ApiError as exc:
        return await _flags_page(request, viewer, error=_refused(exc), status=exc.status)
    return redirect(request, "/settings/flags?notice=flag")


@router.post("/settings/flags/{name}/default")
async def clear_flag(request: Request, name: str, viewer: SignedIn) -> Response:
    await checked_form(request)
    flag = _flag_name(name)
    try:
        await viewer.api.delete(f"/v1/feature-flags/{flag}")
    except ApiError as exc:
        return await _flags_page(request, viewer, error=_refused(exc), status=exc.status)
    return redirect(request, "/settings/flags?notice=flag-default")


# --- usage -----------------------------------------------------------------------------------------


def _fill(used: int, limit: int | None) -> float:
    if not limit:
        return 0.0
    return round(min(100.0, used * 100 / limit), 1)


@router.get("/settings/usage")
async def usage_page(request: Request, viewer: SignedIn) -> Response:
    [usage] = await gather_api(viewer.api.get("/v1/tenant/usage"))
    quotas = [
        {"name": name, "label": QUOTA_LABELS.get(name, name.replace("_", " ")), "usage": value["usage"],
         "limit": value["limit"], "fill": _fill(value["usage"], value["limit"])}
        for name, value in usage["quotas"].items()
    ]  # fmt: skip
    context = {"usage": usage, "quotas": quotas}
    return _render(request, viewer, "settings_usage.html", "Usage", context)


# --- billing ---------------------------------------------------------------------------------------


async def _billing_page(
    request: Request, viewer: Viewer, *, warning: str | None = None, error: str | None = None, status: int = 200
) -> Response:
    [tenant] = await gather_api(viewer.api.get("/v1/tenant"))
    context = {
        "tenant": tenant,
        "tiers": [(tier, label) for tier, label in PAID_TIERS if tier != tenant["subscription_tier"]],
        "can_manage": viewer.can("billing:update"),
        "warning": warning,
        "error": error,
    }
    return _render(request, viewer, "settings_billing.html", "Billing", context, status=status)


@router.get("/settings/billing")
async def billing_page(request: Request, viewer: SignedIn) -> Response:
    return await _billing_page(request, viewer)


async def _to_stripe(request: Request, viewer: Viewer, path: str, body: dict[str, Any]) -> Response:
    try:
        opened = await viewer.api.post(path, body)
    except ApiError as exc:
        if exc.status == 503:
            warning = (
                "Billing is not available on this server: Stripe is not configured (or did not answer). "
                f"Ask the operator to set it up. ({exc.detail})"
            )
            return await _billing_page(request, viewer, warning=warning, status=503)
        return await _billing_page(request, viewer, error=_refused(exc), status=exc.status)
    url = str(opened.get("url") or "")
    if not url.startswith("https://"):
        raise PageError(502, "Billing unavailable", "Stripe answered without a secure address to continue at.")
    return redirect(request, url)


@router.post("/settings/billing/checkout")
async def checkout(request: Request, viewer: SignedIn) -> Response:
    form = await checked_form(request)
    return await _to_stripe(request, viewer, "/v1/billing/checkout", {"tier": field_of(form, "tier")})


@router.post("/settings/billing/portal")
async def portal(request: Request, viewer: SignedIn) -> Response:
    await checked_form(request)
    return await _to_stripe(request, viewer, "/v1/billing/portal", {})
