"""Who may define and run a workflow: besides ``workflows:*``, the permissions its steps act with.

A workflow acts as the system when it runs, so without this a role holding only ``workflows:*`` could
do through a step what it is refused directly (move a campaign, flip a feature flag, read what an event
says). Creating, changing, running and re-running a workflow therefore need:

* each step's own permission (``STEP_PERMISSIONS``): ``set_campaign_stage`` → ``campaigns:update``,
  ``update_feature_flag`` → ``feature_flags:update``, ``email`` → ``users:read`` (it addresses the
  tenant's users by id and by role);
* for steps that carry the event's payload out of the platform (``webhook``, ``email``), read access to
  what the trigger event describes (``TRIGGER_READS``);
* for email steps, a verified email address of one's own (the workflow emails on its creator's behalf).

A refusal is a 403 problem naming every missing permission (``permissions``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from castmetrics.auth.principal import Principal
from castmetrics.errors import Forbidden

STEP_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "set_campaign_stage": ("campaigns:update",),
    "update_feature_flag": ("feature_flags:update",),
    "email": ("users:read",),
}
PAYLOAD_OUT_STEPS = frozenset({"webhook", "email"})
TRIGGER_READS: dict[str, str] = {
    "episode.published": "episodes:read",
    "campaign.created": "campaigns:read",
    "campaign.stage_changed": "campaigns:read",
    "booking.pacing_behind": "bookings:read",
    "conversion.recorded": "attribution:read",
    "quota.threshold_reached": "tenant:read",
}


def _type_of(step: Any) -> str:
    """A step's type, from a stored definition (a dict) or a parsed one (a schema object)."""
    value = step.get("type") if isinstance(step, Mapping) else getattr(step, "type", None)
    return str(value)


def required_permissions(trigger_event: str, steps: Iterable[Any]) -> frozenset[str]:
    """What defining or running a workflow with this trigger and these steps needs, beyond ``workflows:*``."""
    types = {_type_of(step) for step in steps}
    needed = {permission for kind in types for permission in STEP_PERMISSIONS.get(kind, ())}
    if types & PAYLOAD_OUT_STEPS and trigger_event in TRIGGER_READS:
        needed.add(TRIGGER_READS[trigger_event])
    return frozenset(needed)


def ensure_may_use(principal: Principal, trigger_event: str, steps: Iterable[Any]) -> None:
    """Refuse (403) a principal who lacks a permission the steps act with, or who would send email
    without a verified address of their own."""
    steps = list(steps)
    missing = sorted(p for p in required_permissions(trigger_event, steps) if not principal.has(p))
    if missing:
        raise Forbidden(
            f"this workflow's steps need the {', '.join(missing)} permission{'s' if len(missing) > 1 else ''}",
            reason="missing_permission",
            permissions=missing,
        )
    if any(_type_of(step) == "email" for step in steps) and not principal.user.email_verified:
        raise Forbidden(
            "email steps send on your behalf: verify your email address first (see the link we sent you)",
            reason="email_not_verified",
        )
