"""Email preference routes: the current user's preferences, and the public unsubscribe link."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from castmetrics.auth.dependencies import authenticated, settings_of
from castmetrics.auth.principal import Principal
from castmetrics.http.deps import get_database
from castmetrics.preferences import service
from castmetrics.preferences.schemas import EmailPreferencesOut, EmailPreferencesUpdate, UnsubscribedOut

router = APIRouter(prefix="/v1", tags=["email-preferences"])

UnsubscribeToken = Annotated[
    str, Query(min_length=1, max_length=2048, description="The token from the unsubscribe link.")
]


@router.get("/me/email-preferences", response_model=EmailPreferencesOut, summary="My email preferences")
async def get_preferences(principal: Annotated[Principal, authenticated()]) -> EmailPreferencesOut:
    """Which categories of email you receive (for an API key: its creator). Until you change one,
    the defaults: the weekly digest and campaign alerts on, product news off."""
    return await service.get(principal.session, principal.user)


@router.patch("/me/email-preferences", response_model=EmailPreferencesOut, summary="Change my email preferences")
async def update_preferences(
    body: EmailPreferencesUpdate, principal: Annotated[Principal, authenticated()]
) -> EmailPreferencesOut:
    """Turn categories on or off; fields left out stay as they are, unknown fields answer 422."""
    return await service.update(principal.session, principal.actor, principal.user, body)


@router.get("/email-preferences/unsubscribe", response_model=UnsubscribedOut, summary="Unsubscribe (link)")
async def unsubscribe(request: Request, token: UnsubscribeToken) -> UnsubscribedOut:
    """The unsubscribe link in an email lands here: turns that email's category off for the user it
    was sent to, without logging in. A bad or expired token answers 401."""
    category = await service.unsubscribe(get_database(request), settings_of(request), token)
    return UnsubscribedOut(category=category)


@router.post("/email-preferences/unsubscribe", response_model=UnsubscribedOut, summary="Unsubscribe (one click)")
async def unsubscribe_one_click(request: Request, token: UnsubscribeToken) -> UnsubscribedOut:
    """One-click unsubscribe (RFC 8058): mail clients POST `List-Unsubscribe=One-Click` to the link
    of the `List-Unsubscribe` header; the body is ignored, the token in the query decides."""
    category = await service.unsubscribe(get_database(request), settings_of(request), token)
    return UnsubscribedOut(category=category)
