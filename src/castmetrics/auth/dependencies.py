"""Authentication and authorization dependencies: one permission engine for every route.

A route declares who may call it with ``principal: Annotated[Principal, requires("users", "read")]``;
reading the signature tells you the rule. Routes without such a dependency must be on
``PUBLIC_ROUTES`` (a test walks the app and fails otherwise), or on ``OPTIONAL_PUBLIC_ROUTES`` when a
setting mounts them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from castmetrics.auth import service, tokens
from castmetrics.auth.cache import PrincipalCache
from castmetrics.auth.principal import Principal
from castmetrics.auth.usage import UsageMeter
from castmetrics.config import Settings
from castmetrics.errors import Forbidden, Unauthorized
from castmetrics.http.deps import get_database, is_write
from castmetrics.idempotency import service as idempotency

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An access token from `/v1/auth/login`, or an API key (`cm_…`).",
)

# (method, path template) of every route that needs no credentials.
PUBLIC_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        # dashboard pages for visitors without a session; the signed-in pages use ``web.session``
        ("GET", "/login"),
        ("POST", "/login"),
        ("POST", "/logout"),
        ("GET", "/signup"),
        ("POST", "/signup"),
        ("GET", "/forgot-password"),
        ("POST", "/forgot-password"),
        ("GET", "/reset-password"),
        ("POST", "/reset-password"),
        ("GET", "/verify-email"),
        ("GET", "/accept-invite"),
        ("POST", "/accept-invite"),
        ("GET", "/static/{name}"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("POST", "/v1/auth/signup"),
        ("POST", "/v1/auth/login"),
        ("POST", "/v1/auth/refresh"),
        ("POST", "/v1/auth/logout"),
        ("GET", "/v1/auth/verify-email"),
        ("POST", "/v1/auth/password-reset"),
        ("POST", "/v1/auth/password-reset/confirm"),
        ("POST", "/v1/auth/accept-invite"),
        ("GET", "/feeds/{podcast_id}.xml"),
        ("POST", "/v1/admin/login"),
        ("GET", "/v1/email-preferences/unsubscribe"),
        ("POST", "/v1/email-preferences/unsubscribe"),
        ("GET", "/v1/reports/{token}"),  # a signed, expiring sponsor-report link
        ("POST", "/v1/billing/webhook"),  # Stripe's events, verified by their signature
    }
)
# Public routes mounted only when a setting turns them on, so kept apart from ``PUBLIC_ROUTES`` (which
# the app always serves in full): the demo webhook receiver (``demo_webhook_receiver``), which checks the
# delivery's signature instead of credentials.
OPTIONAL_PUBLIC_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("POST", "/v1/demo/webhook/{tenant_slug}"),
    }
)
AUTHENTICATED = "authenticated"


def settings_of(request: Request) -> Settings:
    settings = request.app.state.settings
    assert isinstance(settings, Settings)
    return settings


def principals_of(request: Request) -> PrincipalCache:
    cache = request.app.state.principals
    assert isinstance(cache, PrincipalCache)
    return cache


def usage_of(request: Request) -> UsageMeter:
    meter = request.app.state.usage
    assert isinstance(meter, UsageMeter)
    return meter


# Writes that change no principal and come by the thousand: they keep the tenant's cached principals.
_KEEPS_PRINCIPALS = ("/v1/events/",)


async def _principal(request: Request, credential: str | None) -> AsyncIterator[Principal]:
    if not credential:
        raise Unauthorized("credentials are required: send Authorization: Bearer <token or API key>")
    db, settings, cache = get_database(request), settings_of(request), principals_of(request)
    user_id = api_key_id = session_id = None
    if credential.startswith(tokens.API_KEY_PREFIX):
        key: tuple[object, ...] = ("api_key", tokens.digest(credential))
        resolved = cache.get(key)
        if resolved is None:
            tenant_id, api_key_id = await service.find_api_key(db, credential)
        else:
            tenant_id = resolved.tenant.id
    else:  # the signature and expiry are checked on every request
        claims = tokens.read_access_token(settings.secret_key.get_secret_value(), credential)
        tenant_id, user_id, session_id = claims.tenant_id, claims.user_id, claims.session_id
        key = ("token", tenant_id, user_id, session_id)
        resolved = cache.get(key)
    write = is_write(request)
    async with db.tenant_transaction(tenant_id) as session:
        if resolved is None:
            resolved = await service.resolve(session, tenant_id, user_id, api_key_id, session_id)
            cache.put(key, resolved)
        principal = service.principal_of(session, resolved, write=write)
        yield principal
    # Committed: counted in memory (written in batches, off the request path), and a write of the tenant
    # forgets its cached principals in this process (other processes within the cache's bound).
    meter = usage_of(request)
    meter.count(principal.tenant.id, principal.user.id, api_calls=1)
    if principal.api_key is not None:
        meter.used_key(principal.tenant.id, principal.api_key.id)
    if write and not request.url.path.startswith(_KEEPS_PRINCIPALS):
        cache.forget_tenant(principal.tenant.id)


def requires(resource: str, action: str, *, verified: bool = False) -> Any:
    """Dependency: authenticated, acting for the credential's tenant, holding ``resource:action``
    (and, with ``verified``, a verified email). Answers the ``Principal``; its session commits
    before the response is sent."""
    permission = f"{resource}:{action}"

    async def dependency(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer_scheme)
    ) -> AsyncIterator[Principal]:
        async for principal in _principal(request, credentials.credentials if credentials else None):
            if not principal.has(permission):
                raise Forbidden(
                    f"this needs the {permission} permission",
                    reason="missing_permission",
                    permission=permission,
                )
            if verified and not principal.user.email_verified:
                raise Forbidden(
                    "verify your email address first (see the link we sent you)", reason="email_not_verified"
                )
            actor = principal.actor
            await idempotency.claim(request, principal.session, principal.tenant.id, f"{actor.type}:{actor.id}")
            yield principal

    dependency.permission = permission  # type: ignore[attr-defined]
    return Depends(dependency, scope="function")


def authenticated() -> Any:
    """Dependency: any valid credential of an active user (``/v1/me`` and one's own settings)."""

    async def dependency(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer_scheme)
    ) -> AsyncIterator[Principal]:
        async for principal in _principal(request, credentials.credentials if credentials else None):
            key = principal.api_key
            if key is not None and is_write(request) and not ({"read", "admin"} & set(key.scopes)):
                raise Forbidden("an ingest-only API key may only send events", reason="api_key_scope")
            yield principal

    dependency.permission = AUTHENTICATED  # type: ignore[attr-defined]
    return Depends(dependency, scope="function")


def permission_of(call: Callable[..., Any]) -> str | None:
    value = getattr(call, "permission", None)
    return value if isinstance(value, str) else None
