"""Identity routes: sign-up, login and tokens, the current user, users, roles, permissions, API keys."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from castmetrics.auth import tokens
from castmetrics.auth.dependencies import authenticated, principals_of, requires, settings_of, usage_of
from castmetrics.auth.principal import Principal
from castmetrics.errors import Invalid, Unauthorized
from castmetrics.flags import service as flags
from castmetrics.http.deps import get_database
from castmetrics.http.pagination import CursorParam, Limit, Page
from castmetrics.identity import service
from castmetrics.identity.models import ApiKey, Role, User
from castmetrics.identity.schemas import (
    ApiKeyBrief,
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    ApiKeyUpdate,
    EmailIn,
    InviteIn,
    LoginIn,
    MeOut,
    MeUser,
    NewPasswordIn,
    PermissionOut,
    RefreshIn,
    RoleIn,
    RoleOut,
    RoleUpdate,
    SignupIn,
    SignupOut,
    TenantBrief,
    TokenPair,
    UserMetricsOut,
    UserOut,
    UserRolesIn,
    UserUpdate,
    VerifiedOut,
)

auth_router = APIRouter(prefix="/v1/auth", tags=["auth"])
router = APIRouter(prefix="/v1", tags=["identity"])


def _user_out(user: User, roles: list[str]) -> UserOut:
    out = UserOut.model_validate(user)
    out.roles = roles
    return out


# --- auth (public) -------------------------------------------------------------------------------


@auth_router.post("/signup", status_code=status.HTTP_201_CREATED, response_model=SignupOut, summary="Sign up")
async def signup(body: SignupIn, request: Request) -> SignupOut:
    """Create a tenant on the free tier with you as its owner, and log you in. A slug or email
    (any case) already in use answers 409. A verification link is emailed."""
    tenant, user, pair = await service.signup(get_database(request), settings_of(request), body)
    return SignupOut(**pair.model_dump(), tenant=TenantBrief.model_validate(tenant), user=_user_out(user, ["owner"]))


@auth_router.post("/login", response_model=TokenPair, summary="Log in")
async def login(body: LoginIn, request: Request) -> TokenPair:
    """Exchange email and password for an access token and a rotating refresh token. Repeated
    failures for one email or one address are slowed, then refused with 429 and Retry-After."""
    client = request.client.host if request.client else None
    return await service.login(
        get_database(request), settings_of(request), str(body.email), body.password, client, meter=usage_of(request)
    )


@auth_router.post("/refresh", response_model=TokenPair, summary="Refresh tokens")
async def refresh(body: RefreshIn, request: Request) -> TokenPair:
    """Rotate the refresh token for a new pair. Reusing a rotated token revokes all its sessions."""
    try:
        return await service.refresh(get_database(request), settings_of(request), body.refresh_token)
    except Unauthorized:
        # a replayed token may just have ended its sessions: its tenant's principals go (not everyone's,
        # which any caller with a made-up token could otherwise empty the cache of)
        with contextlib.suppress(Unauthorized):
            principals_of(request).forget_tenant(tokens.parse_refresh_token(body.refresh_token).tenant_id)
        raise


@auth_router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, summary="Log out")
async def logout(body: RefreshIn, request: Request) -> Response:
    """Revoke the refresh token and every token rotated from the same login."""
    await service.logout(get_database(request), body.refresh_token)
    principals_of(request).clear()  # the ended session's tokens stop working in this process at once
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@auth_router.get("/verify-email", response_model=VerifiedOut, summary="Verify an email address")
async def verify_email(request: Request, token: Annotated[str, Query(min_length=1, max_length=2048)]) -> VerifiedOut:
    """The link from the verification email lands here."""
    user = await service.verify_email(get_database(request), settings_of(request), token)
    principals_of(request).forget_tenant(user.tenant_id)  # the user's cached principal was unverified
    return VerifiedOut(email=user.email, email_verified=user.email_verified)


@auth_router.post(
    "/verify-email/resend", status_code=status.HTTP_202_ACCEPTED, summary="Send the verification email again"
)
async def resend_verification(request: Request, principal: Annotated[Principal, authenticated()]) -> dict[str, str]:
    """Queues a new verification link for the current user; 409 when already verified."""
    await service.resend_verification(principal.session, settings_of(request), principal.user)
    return {"status": "queued"}


@auth_router.post("/password-reset", status_code=status.HTTP_202_ACCEPTED, summary="Request a password reset")
async def request_password_reset(body: EmailIn, request: Request) -> dict[str, str]:
    """Emails a reset link when an active account has this address. Always answers 202, so the
    answer does not tell whether an account exists."""
    await service.request_password_reset(get_database(request), settings_of(request), str(body.email))
    return {"status": "queued"}


@auth_router.post("/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT, summary="Choose a new password")
async def confirm_password_reset(body: NewPasswordIn, request: Request) -> Response:
    """Sets the password from a reset link's token (single use) and ends every session."""
    await service.reset_password(get_database(request), settings_of(request), body.token, body.password)
    principals_of(request).clear()  # every ended session's tokens stop working in this process at once
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@auth_router.post("/accept-invite", response_model=TokenPair, summary="Accept an invitation")
async def accept_invite(body: NewPasswordIn, request: Request) -> TokenPair:
    """Sets the invited user's password from the invitation token and logs them in."""
    return await service.accept_invite(get_database(request), settings_of(request), body.token, body.password)


# --- the current user ----------------------------------------------------------------------------


@router.get("/me", response_model=MeOut, summary="Who am I")
async def me(principal: Annotated[Principal, authenticated()]) -> MeOut:
    """The user (for an API key: its creator), tenant, roles and effective permissions. An ingest-only
    key, which may only send events, learns its tenant and permissions, not who created it (`user` is
    null, `roles` empty)."""
    key = principal.api_key
    ingest_only = key is not None and not ({"read", "admin"} & set(key.scopes))
    return MeOut(
        user=None if ingest_only else MeUser.model_validate(principal.user, from_attributes=True),
        tenant=TenantBrief.model_validate(principal.tenant),
        roles=[] if ingest_only else principal.roles,
        permissions=sorted(principal.permissions),
        api_key=ApiKeyBrief(id=key.id, name=key.name, prefix=key.prefix, scopes=key.scopes) if key else None,
    )


# --- users ---------------------------------------------------------------------------------------


@router.get("/users", response_model=Page[UserOut], summary="List users")
async def list_users(
    principal: Annotated[Principal, requires("users", "read")], limit: Limit = 50, cursor: CursorParam = None
) -> Page[UserOut]:
    """The tenant's users, newest first."""
    users, next_cursor = await service.list_users(principal.session, limit=limit, cursor=cursor)
    roles = await service.roles_for_users(principal.session, [u.id for u in users])
    return Page(items=[_user_out(u, roles[u.id]) for u in users], next_cursor=next_cursor)


@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=UserOut, summary="Invite a user")
async def invite_user(
    body: InviteIn,
    request: Request,
    principal: Annotated[Principal, requires("users", "create", verified=True)],
) -> UserOut:
    """Create a user and email them an invitation link to choose a password. Counts against the
    users quota (402 when full). You can only assign roles whose permissions you hold."""
    user = await service.invite_user(principal.session, settings_of(request), principal, body)
    return _user_out(user, await service.roles_of(principal.session, user.id))


@router.get("/users/{user_id}", response_model=UserOut, summary="Get a user")
async def get_user(user_id: uuid.UUID, principal: Annotated[Principal, requires("users", "read")]) -> UserOut:
    """One user of the tenant; another tenant's user answers 404."""
    user = await service.get_user(principal.session, user_id)
    return _user_out(user, await service.roles_of(principal.session, user.id))


@router.patch("/users/{user_id}", response_model=UserOut, summary="Update a user")
async def update_user(
    user_id: uuid.UUID, body: UserUpdate, principal: Annotated[Principal, requires("users", "update")]
) -> UserOut:
    """Rename, deactivate or re-activate a user. The last active owner cannot be deactivated."""
    user = await service.update_user(
        principal.session, principal, await service.get_user(principal.session, user_id), body
    )
    return _user_out(user, await service.roles_of(principal.session, user.id))


@router.delete("/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Deactivate a user")
async def delete_user(user_id: uuid.UUID, principal: Annotated[Principal, requires("users", "delete")]) -> Response:
    """Deactivates the user (their history stays); their sessions and API keys stop working."""
    await service.deactivate_user(principal.session, principal, await service.get_user(principal.session, user_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/users/{user_id}/roles", response_model=UserOut, summary="Set a user's roles")
async def set_user_roles(
    user_id: uuid.UUID, body: UserRolesIn, principal: Annotated[Principal, requires("users", "update")]
) -> UserOut:
    """Replace the user's roles. You can only grant or take away roles whose permissions you hold."""
    user = await service.get_user(principal.session, user_id)
    roles = await service.set_user_roles(principal.session, principal, user, body.role_ids)
    return _user_out(user, roles)


@router.get("/users/{user_id}/metrics", response_model=UserMetricsOut, summary="A user's activity")
async def user_metrics(
    request: Request,
    user_id: uuid.UUID,
    principal: Annotated[Principal, requires("users", "read")],
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: date | None = None,
) -> UserMetricsOut:
    """Daily logins and API calls (UTC days), every day of the range present; default the last 30 days."""
    last = to or datetime.now(UTC).date()
    first = from_ or (last - timedelta(days=29) if last > date.min + timedelta(days=29) else date.min)
    if first > last or (last - first).days > 366:
        raise Invalid("from must not be after to, and the range must be at most 366 days", parameter="from")
    user = await service.get_user(principal.session, user_id)
    pending = usage_of(request).pending(principal.tenant.id, user.id)
    items = await service.user_metrics(principal.session, principal.tenant.id, user.id, first, last, pending)
    return UserMetricsOut(user_id=user.id, items=items)


# --- roles and permissions -----------------------------------------------------------------------


async def _role_out(principal: Principal, role: Role) -> RoleOut:
    permissions = (await service.role_permissions(principal.session, [role.id]))[role.id]
    return RoleOut(
        id=role.id, name=role.name, description=role.description, is_system=role.is_system,
        permissions=permissions, created_at=role.created_at,
    )  # fmt: skip


@router.get("/roles", response_model=Page[RoleOut], summary="List roles")
async def list_roles(
    principal: Annotated[Principal, requires("roles", "read")], limit: Limit = 50, cursor: CursorParam = None
) -> Page[RoleOut]:
    """The tenant's roles (the five defaults and its own), newest first, with their permissions."""
    roles, next_cursor = await service.list_roles(principal.session, limit=limit, cursor=cursor)
    permissions = await service.role_permissions(principal.session, [r.id for r in roles])
    items = [
        RoleOut(
            id=r.id,
            name=r.name,
            description=r.description,
            is_system=r.is_system,
            permissions=permissions[r.id],
            created_at=r.created_at,
        )  # fmt: skip
        for r in roles
    ]
    return Page(items=items, next_cursor=next_cursor)


@router.post("/roles", status_code=status.HTTP_201_CREATED, response_model=RoleOut, summary="Create a role")
async def create_role(body: RoleIn, principal: Annotated[Principal, requires("roles", "create")]) -> RoleOut:
    """A role of the tenant's own, with permissions you hold yourself. A taken name answers 409;
    403 (reason `feature_disabled`) while the `custom_roles` flag is off for the tenant."""
    await flags.ensure_enabled(principal.session, principal.tenant.id, "custom_roles")
    return await _role_out(principal, await service.create_role(principal.session, principal, body))


@router.get("/roles/{role_id}", response_model=RoleOut, summary="Get a role")
async def get_role(role_id: uuid.UUID, principal: Annotated[Principal, requires("roles", "read")]) -> RoleOut:
    """One role with its permissions."""
    return await _role_out(principal, await service.get_role(principal.session, role_id))


@router.patch("/roles/{role_id}", response_model=RoleOut, summary="Update a role")
async def update_role(
    role_id: uuid.UUID, body: RoleUpdate, principal: Annotated[Principal, requires("roles", "update")]
) -> RoleOut:
    """Rename a role or replace its permissions; the default roles answer 409."""
    role = await service.get_role(principal.session, role_id)
    return await _role_out(principal, await service.update_role(principal.session, principal, role, body))


@router.delete("/roles/{role_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a role")
async def delete_role(role_id: uuid.UUID, principal: Annotated[Principal, requires("roles", "delete")]) -> Response:
    """Delete a role of the tenant's own (its users lose it); the default roles answer 409."""
    await service.delete_role(principal.session, principal, await service.get_role(principal.session, role_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/permissions", response_model=Page[PermissionOut], summary="List permissions")
async def list_permissions(principal: Annotated[Principal, requires("roles", "read")]) -> Page[PermissionOut]:
    """Every permission of the platform (resource × action), to build roles from."""
    permissions = await service.list_permissions(principal.session)
    return Page(items=[PermissionOut.model_validate(p) for p in permissions], next_cursor=None)


# --- API keys ------------------------------------------------------------------------------------


def _key_out(request: Request, principal: Principal, api_key: ApiKey) -> ApiKeyOut:
    """A key as stored, with its last use in this process if not written yet (``UsageMeter``)."""
    out = ApiKeyOut.model_validate(api_key)
    pending = usage_of(request).last_used(principal.tenant.id, out.id)
    if pending is not None and (out.last_used_at is None or pending > out.last_used_at):
        out = out.model_copy(update={"last_used_at": pending})
    return out


@router.get("/api-keys", response_model=Page[ApiKeyOut], summary="List API keys")
async def list_api_keys(
    request: Request,
    principal: Annotated[Principal, requires("api_keys", "read")],
    limit: Limit = 50,
    cursor: CursorParam = None,
) -> Page[ApiKeyOut]:
    """The tenant's keys, newest first, revoked ones included; keys themselves are never shown again."""
    keys, next_cursor = await service.list_api_keys(principal.session, limit=limit, cursor=cursor)
    return Page(items=[_key_out(request, principal, k) for k in keys], next_cursor=next_cursor)


@router.post(
    "/api-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    summary="Create an API key",
)
async def create_api_key(
    body: ApiKeyIn, principal: Annotated[Principal, requires("api_keys", "create", verified=True)]
) -> ApiKeyCreated:
    """A key acting for you with the given scopes: `ingest` (send events only), `read`, `admin`.
    The answer holds the key once; store it."""
    api_key, key = await service.create_api_key(principal.session, principal, body)
    return ApiKeyCreated(**ApiKeyOut.model_validate(api_key).model_dump(), key=key)


@router.get("/api-keys/{key_id}", response_model=ApiKeyOut, summary="Get an API key")
async def get_api_key(
    request: Request, key_id: uuid.UUID, principal: Annotated[Principal, requires("api_keys", "read")]
) -> ApiKeyOut:
    """One key's name, prefix, scopes and last use."""
    return _key_out(request, principal, await service.get_api_key(principal.session, key_id))


@router.patch("/api-keys/{key_id}", response_model=ApiKeyOut, summary="Rename an API key")
async def update_api_key(
    key_id: uuid.UUID, body: ApiKeyUpdate, principal: Annotated[Principal, requires("api_keys", "update")]
) -> ApiKeyOut:
    """Rename a key (its scopes are fixed: create a new key instead)."""
    api_key = await service.get_api_key(principal.session, key_id)
    if body.name is not None:
        api_key = await service.rename_api_key(principal.session, principal, api_key, body.name)
    return ApiKeyOut.model_validate(api_key)


@router.delete("/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke an API key")
async def revoke_api_key(
    key_id: uuid.UUID, principal: Annotated[Principal, requires("api_keys", "delete")]
) -> Response:
    """Revoke a key: it stops working at once."""
    await service.revoke_api_key(principal.session, principal, await service.get_api_key(principal.session, key_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
