"""The demo tenant's workflows: a signed webhook to the app's own demo receiver on every campaign stage
change, and an email to the sales role when a booking falls behind its pacing."""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from castmetrics.auth.principal import Actor
from castmetrics.tenancy.models import Tenant
from castmetrics.workflows import service as workflows
from castmetrics.workflows.api_schemas import WorkflowIn
from castmetrics.workflows.models import Workflow

# Where ``serve`` listens by default; ``serve --demo`` passes the address it really listens on.
DEFAULT_BASE_URL = "http://127.0.0.1:8000"


def receiver_url(base_url: str, tenant_slug: str) -> str:
    """The demo receiver's URL for a tenant: the one private webhook URL ``serve --demo`` allows."""
    return f"{base_url.rstrip('/')}/v1/demo/webhook/{tenant_slug}"


def demo_workflows(base_url: str, tenant_slug: str) -> list[WorkflowIn]:
    """The definitions, with the webhook pointed at ``{base_url}/v1/demo/webhook/{tenant_slug}``."""
    return [
        WorkflowIn.model_validate(
            {
                "name": "Tell the partner channel about campaign changes",
                "description": "Posts every campaign stage change, signed, to the demo webhook receiver "
                "(served by `castmetrics serve --demo`), which logs `workflows.demo_webhook_received`.",
                "trigger_event": "campaign.stage_changed",
                "steps": [{"type": "webhook", "url": receiver_url(base_url, tenant_slug)}],
            }
        ),
        WorkflowIn.model_validate(
            {
                "name": "Alert sales when a booking falls behind",
                "description": "Emails everyone with the sales role when the pacing check finds a booking "
                "under 90% of the delivery expected by now.",
                "trigger_event": "booking.pacing_behind",
                "steps": [
                    {
                        "type": "email",
                        "to": {"roles": ["sales"]},
                        "subject": "Booking {{ booking_id }} is behind",
                        "body": "Delivered {{ delivered }} of {{ expected_to_date }} expected by now "
                        "(booked {{ booked }}, flight {{ flight_start }} to {{ flight_end }}).",
                    }
                ],
            }
        ),
    ]


async def seed_workflows(
    session: AsyncSession, tenant: Tenant, actor: Actor, *, base_url: str = DEFAULT_BASE_URL
) -> int:
    """Create the demo workflows through the workflows service (quota, audit, secrets) unless the tenant
    already has workflows: a re-run, or a demo whose workflows a user has edited, keeps what is there.
    Answers how many were created."""
    if await session.scalar(select(exists().where(Workflow.tenant_id == tenant.id))):
        return 0
    definitions = demo_workflows(base_url, tenant.slug)
    for definition in definitions:
        await workflows.create_workflow(session, tenant, actor, definition, created_by=None)
    return len(definitions)
