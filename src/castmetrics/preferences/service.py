"""Email preferences: reading them (defaults until a user changes one), changing them, and the
signed unsubscribe links that turn one category off without logging in."""

from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import urlencode

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.audit import service as audit
from castmetrics.auth import tokens
from castmetrics.auth.principal import Actor, UserRef
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.errors import Unauthorized
from castmetrics.identity import service as identity
from castmetrics.identity.models import User
from castmetrics.preferences.models import EmailPreference
from castmetrics.preferences.schemas import (
    CATEGORIES,
    DEFAULTS,
    Category,
    EmailPreferencesOut,
    EmailPreferencesUpdate,
)

UNSUBSCRIBE_PURPOSE = "unsubscribe"
# Long-lived on purpose: an unsubscribe link in an old email must keep working.
UNSUBSCRIBE_LIFETIME = timedelta(days=365)
UNSUBSCRIBE_PATH = "/v1/email-preferences/unsubscribe"


def _out(row: EmailPreference | None) -> EmailPreferencesOut:
    if row is None:
        return EmailPreferencesOut(**DEFAULTS, updated_at=None)
    return EmailPreferencesOut(
        weekly_digest=row.weekly_digest,
        campaign_alerts=row.campaign_alerts,
        product_news=row.product_news,
        updated_at=row.updated_at,
    )


def _categories(preferences: EmailPreferencesOut) -> dict[str, bool]:
    return {category: getattr(preferences, category) for category in CATEGORIES}


async def get(session: AsyncSession, user: UserRef) -> EmailPreferencesOut:
    """The user's preferences; the defaults while they have never changed one."""
    row = await session.scalar(
        select(EmailPreference).where(EmailPreference.tenant_id == user.tenant_id, EmailPreference.user_id == user.id)
    )
    return _out(row)


async def wants(session: AsyncSession, user: UserRef, category: Category) -> bool:
    """Whether ``user`` receives email of ``category``: senders ask before queueing one."""
    return bool(_categories(await get(session, user))[category])


async def update(
    session: AsyncSession, actor: Actor, user: UserRef, changes: EmailPreferencesUpdate
) -> EmailPreferencesOut:
    """Apply the fields present in ``changes`` (creating the user's row on first change), audited."""
    before = await get(session, user)
    # Only real changes are written and audited: a second click on an unsubscribe link is a no-op.
    values = {category: wanted for category, wanted in changes.changes().items() if getattr(before, category) != wanted}
    if not values:
        return before
    # Upsert, so two first changes at once cannot both try to create the row; categories not sent
    # keep their current value (or take the column default on insert).
    statement = (
        insert(EmailPreference)
        .values(tenant_id=user.tenant_id, user_id=user.id, **values)
        .on_conflict_do_update(
            index_elements=[EmailPreference.tenant_id, EmailPreference.user_id],
            set_={**values, "updated_at": func.now()},
        )
        .returning(EmailPreference)
    )
    row = await session.scalar(statement, execution_options={"populate_existing": True})
    after = _out(row)
    await audit.record(
        session, tenant_id=user.tenant_id, actor=actor, action="update", entity_type="email_preferences",
        entity_id=user.id, before=_categories(before), after=_categories(after),
    )  # fmt: skip
    return after


def unsubscribe_token(settings: Settings, user: User, category: Category) -> str:
    """A signed token that turns ``category`` off for ``user``; valid for a year."""
    claims = {"sub": str(user.id), "tid": str(user.tenant_id), "cat": category}
    return tokens.sign(settings.secret_key.get_secret_value(), UNSUBSCRIBE_PURPOSE, claims, UNSUBSCRIBE_LIFETIME)


def unsubscribe_link(settings: Settings, user: User, category: Category) -> str:
    """The link to put in an email of ``category`` (and in its ``List-Unsubscribe`` header)."""
    query = urlencode({"token": unsubscribe_token(settings, user, category)})
    return f"{settings.public_url.rstrip('/')}{UNSUBSCRIBE_PATH}?{query}"


def _read_token(settings: Settings, token: str) -> tuple[uuid.UUID, uuid.UUID, Category]:
    claims = tokens.verify(settings.secret_key.get_secret_value(), UNSUBSCRIBE_PURPOSE, token)
    try:
        tenant_id, user_id = uuid.UUID(str(claims["tid"])), uuid.UUID(str(claims["sub"]))
        category = claims["cat"]
    except (KeyError, ValueError) as exc:
        raise Unauthorized("the unsubscribe token is not valid") from exc
    for known in CATEGORIES:
        if category == known:
            return tenant_id, user_id, known
    raise Unauthorized("the unsubscribe token is not valid")


async def unsubscribe(db: Database, settings: Settings, token: str) -> Category:
    """Turn off the category named in a signed unsubscribe token, for the user it names; answers the
    category. Idempotent. The token decides the tenant and the user, so nothing else can be changed."""
    tenant_id, user_id, category = _read_token(settings, token)
    async with db.tenant_transaction(tenant_id) as session:
        user = await identity.get_user(session, user_id)
        changes = EmailPreferencesUpdate.model_validate({category: False})
        await update(session, Actor("user", str(user.id)), user, changes)
    return category
