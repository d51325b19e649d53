"""Queueing and delivering email. Messages are rows first (so they commit with their cause), then
delivered by a job over SMTP — or, with no SMTP configured, written to the log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib
import structlog
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.config import Settings
from castmetrics.db.session import own_rows
from castmetrics.mail.models import Email

log = structlog.get_logger(__name__)
MAX_ATTEMPTS = 5


async def queue(
    session: AsyncSession,
    settings: Settings,
    *,
    tenant_id: uuid.UUID,
    kind: str,
    to: str,
    subject: str,
    body: str,
) -> Email:
    """Add a message in the caller's transaction. Without SMTP it is logged (link included, so the
    embedded default works offline) and marked ``logged``; with SMTP the delivery job sends it."""
    email = Email(tenant_id=tenant_id, kind=kind, to_address=to, subject=subject, body=body)
    if settings.smtp_url is None:
        email.status = "logged"
        log.info("mail.logged", kind=kind, to=to, subject=subject, body=body)
    session.add(email)
    await session.flush()
    return email


@dataclass(frozen=True)
class Recent:
    """The messages of one kind sent to one address within a window: how many, and when the first of
    them leaves the window (``None`` when there are none)."""

    count: int
    frees_at: datetime | None


_RECENT = text(
    """
    SELECT count(*) AS sent, min(created_at) + make_interval(secs => :window) AS frees_at
    FROM emails
    WHERE kind = :kind AND lower(to_address) = lower(:to)
      AND created_at > clock_timestamp() - make_interval(secs => :window)
    """
)
_ADDRESS_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('mail:' || :kind || ':' || lower(:to)))")


async def recent(session: AsyncSession, *, kind: str, to: str, within: timedelta) -> Recent:
    """The current tenant's messages of ``kind`` to ``to`` (any case) in the last ``within``. Holds a lock
    on (kind, address) until the transaction ends, so two requests cannot both see room for the last
    message: call it in the transaction that queues the next one."""
    await session.execute(_ADDRESS_LOCK, {"kind": kind, "to": to})
    row = (await session.execute(_RECENT, {"kind": kind, "to": to, "window": within.total_seconds()})).one()
    return Recent(count=int(row.sent), frees_at=row.frees_at)


async def pending_tenants(session: AsyncSession) -> list[uuid.UUID]:
    return [row[0] for row in await session.execute(text("SELECT emails_pending_tenants()"))]


def _message(settings: Settings, email: Email) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = email.to_address
    message["Subject"] = email.subject
    message["Message-ID"] = f"<{email.id}@castmetrics>"
    message.set_content(email.body)
    return message


async def send(settings: Settings, message: EmailMessage) -> None:
    assert settings.smtp_url is not None
    url = urlsplit(settings.smtp_url)
    if url.scheme not in ("smtp", "smtps"):
        raise ValueError("CASTMETRICS_SMTP_URL must start with smtp:// or smtps://")
    implicit_tls = url.scheme == "smtps"
    await aiosmtplib.send(
        message,
        hostname=url.hostname or "localhost",
        port=url.port or (465 if implicit_tls else 25),
        username=unquote(url.username) if url.username else None,
        password=unquote(url.password) if url.password else None,
        use_tls=implicit_tls,
        start_tls=None,  # upgrade when the server offers STARTTLS
        timeout=30,
    )


async def deliver_pending(session: AsyncSession, settings: Settings, batch: int = 50) -> int:
    """Send the current tenant's pending messages; failures are retried up to ``MAX_ATTEMPTS``."""
    if settings.smtp_url is None:
        return 0
    emails = (
        await session.scalars(
            select(Email)
            .where(*own_rows(session, Email.tenant_id), Email.status == "pending")
            .order_by(Email.created_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
    ).all()
    sent = 0
    for email in emails:
        email.attempts += 1
        try:
            await send(settings, _message(settings, email))
        except (aiosmtplib.SMTPException, OSError) as exc:
            email.last_error = str(exc)[:500]
            if email.attempts >= MAX_ATTEMPTS:
                email.status = "failed"
            log.warning("mail.failed", kind=email.kind, attempts=email.attempts, error=email.last_error)
            continue
        email.status = "sent"
        email.sent_at = datetime.now(UTC)
        sent += 1
    await session.flush()
    return sent
