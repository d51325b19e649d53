"""Running one workflow step (webhook, email, campaign stage, feature flag, condition) and the
payload helpers steps and trigger conditions share: ``lookup``, ``condition_holds``, ``render``.

The engine owns the execution: it opens the tenant transaction a step runs in, records the step's
result in it, commits, retries and runs ``delay`` steps. A webhook is made in two parts so that no
transaction or connection is held while a receiver takes its time: ``prepare_webhook`` (in the
transaction, no I/O), then ``deliver`` (after the commit, no database). A step here either answers its
JSON result or raises: ``StepStopped`` (a condition that does not hold: the execution ends, succeeded),
``StepError`` (this attempt failed; retried) or ``StepRefused`` (failed for a reason another attempt
cannot fix: the execution fails at once). Steps that write run in a savepoint, so a failed one leaves
nothing behind in the engine's transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import re
import time
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

import castmetrics
from castmetrics.auth.principal import Actor
from castmetrics.catalog import fetch
from castmetrics.config import Settings
from castmetrics.errors import Conflict, NotFound, QuotaExceeded
from castmetrics.flags import service as flags
from castmetrics.identity.models import Role, User, UserRole
from castmetrics.mail import service as mail
from castmetrics.quotas import service as quotas
from castmetrics.sponsorship import service as sponsorship
from castmetrics.tenancy import service as tenancy
from castmetrics.workflows.schemas import (
    MAX_WEBHOOK_TIMEOUT_SECONDS,
    ConditionStep,
    DelayStep,
    EmailStep,
    EmailTo,
    SetCampaignStageStep,
    Step,
    UpdateFeatureFlagStep,
    WebhookStep,
)

USER_AGENT = f"Castmetrics-Webhooks/{castmetrics.__version__}"
# What a webhook result keeps of the receiver's answer; enough bytes are read for that many characters.
RESPONSE_CHARS = 500
RESPONSE_BYTES = 4 * RESPONSE_CHARS
ERROR_EXCERPT_CHARS = 200
MAX_RECIPIENTS = 100
MAX_SUBJECT_CHARS = 500

_STEP: TypeAdapter[Step] = TypeAdapter(Step)
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)\s*\}\}")


@dataclass(frozen=True)
class StepContext:
    """Everything a step may use: the engine builds one per attempt."""

    session: AsyncSession  # the tenant transaction the step runs in (commit is the engine's job)
    settings: Settings
    tenant_id: uuid.UUID
    workflow_id: uuid.UUID
    workflow_name: str
    secret: str  # the workflow's webhook signing secret
    execution_id: uuid.UUID
    step_index: int
    attempt: int  # 1 for the first try
    trigger_event: str
    event_id: uuid.UUID | None
    payload: dict[str, Any]
    # Who created the workflow (None: the platform itself, e.g. the demo seed): email steps send as them.
    created_by: uuid.UUID | None = None


class StepStopped(Exception):
    """A condition step that does not hold: the execution ends, succeeded (stopped)."""


class StepError(Exception):
    """This attempt failed; the engine retries per the step's max_attempts. str(exc) is shown to users."""


class StepRefused(StepError):
    """The step cannot succeed however often it is tried (a refused address, an illegal transition, an
    unknown flag): the engine fails the execution at once."""


# --- payload helpers -----------------------------------------------------------------------------


def lookup(payload: dict[str, Any], path: str) -> tuple[bool, Any]:
    """The value at a dotted path (``campaign.stage``; a numeric part indexes a list): ``(found, value)``.
    A present ``null`` is found, with the value ``None``."""
    current: Any = payload
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return False, None
    return True, current


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: True is not the number 1 here
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "other"


def _equal(left: Any, right: Any) -> bool:
    """JSON equality: same kind and same value (1 equals 1.0; true does not equal 1; lists and objects
    compare item by item under the same rule)."""
    kind = _kind(left)
    if kind != _kind(right):
        return False
    if kind == "list":
        return len(left) == len(right) and all(_equal(a, b) for a, b in zip(left, right, strict=True))
    if kind == "object":
        return left.keys() == right.keys() and all(_equal(left[key], right[key]) for key in left)
    return bool(left == right)


def _order(left: Any, right: Any) -> int | None:
    """-1, 0 or 1 for two numbers or two strings; ``None`` when they do not compare."""
    kind = _kind(left)
    if kind != _kind(right) or kind not in ("number", "string"):
        return None
    return (left > right) - (left < right)  # type: ignore[no-any-return]


def condition_holds(payload: dict[str, Any], field: str, operator: str, value: Any) -> bool:
    """Whether ``field`` of the payload compares to ``value`` by ``operator``. Never raises.

    ``exists``/``not_exists``: the path is (not) present, whatever its value (null included). Every
    other operator is false on a missing field. Numbers compare numerically (booleans are not
    numbers), strings as strings, and a comparison between different kinds is false — ``ne`` too —
    except that ``eq``/``ne`` against ``null`` test for null. ``in``/``not_in`` need a list ``value``
    (false otherwise); ``contains`` is a substring of a string field or an item of a list field.
    """
    found, actual = lookup(payload, field)
    if operator == "exists":
        return found
    if operator == "not_exists":
        return not found
    if not found:
        return False
    match operator:
        case "eq":
            return _equal(actual, value)
        case "ne":
            if actual is None or value is None:
                return (actual is None) != (value is None)
            return _kind(actual) == _kind(value) and not _equal(actual, value)
        case "gt" | "gte" | "lt" | "lte":
            order = _order(actual, value)
            if order is None:
                return False
            return {"gt": order > 0, "gte": order >= 0, "lt": order < 0, "lte": order <= 0}[operator]
        case "in":
            return isinstance(value, list) and any(_equal(actual, item) for item in value)
        case "not_in":
            return isinstance(value, list) and not any(_equal(actual, item) for item in value)
        case "contains":
            if isinstance(actual, str):
                return isinstance(value, str) and value in actual
            return isinstance(actual, list) and any(_equal(item, value) for item in actual)
    return False


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float | list | dict):
        return orjson.dumps(value).decode()
    return str(value)


def render(template: str, payload: dict[str, Any]) -> str:
    """The template with each ``{{ path }}`` replaced by that payload value (strings as they are, other
    values as JSON, a missing field or null as nothing). One pass of plain substitution: a value that
    itself looks like ``{{ … }}`` is not expanded again, and nothing is evaluated."""
    return _PLACEHOLDER.sub(lambda match: _as_text(lookup(payload, match.group(1))[1]), template)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Castmetrics-Signature`` value: ``t=<unix>,v1=<hex HMAC-SHA256 of "<t>." + body>``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


# --- running a step ------------------------------------------------------------------------------


def _parse(step: dict[str, Any]) -> Step:
    """The step as its schema reads it (``StepRefused`` when it is invalid). A webhook stored before its
    maximum timeout was lowered runs with the maximum instead of failing."""
    timeout = step.get("timeout_seconds")
    if (
        step.get("type") == "webhook"
        and isinstance(timeout, int | float)
        and not isinstance(timeout, bool)
        and timeout > MAX_WEBHOOK_TIMEOUT_SECONDS
    ):
        step = {**step, "timeout_seconds": MAX_WEBHOOK_TIMEOUT_SECONDS}
    try:
        return _STEP.validate_python(step)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'step'}: {e['msg']}" for e in exc.errors())
        raise StepRefused(f"invalid step: {problems}") from exc


async def run_step(ctx: StepContext, step: dict[str, Any]) -> dict[str, Any]:
    """Run one step (any type but ``delay``, which the engine handles) and answer its JSON result.
    Raises ``StepStopped``, ``StepError`` or ``StepRefused``. A webhook is prepared and delivered in one
    go here; the engine does the two parts apart, committing in between."""
    parsed = _parse(step)
    match parsed:
        case ConditionStep():
            if not condition_holds(ctx.payload, parsed.field, parsed.operator, parsed.value):
                shown = "" if parsed.operator in ("exists", "not_exists") else f" {_as_json(parsed.value)}"
                raise StepStopped(f"condition {parsed.field} {parsed.operator}{shown} does not hold")
            return {"held": True}
        case WebhookStep():
            return await deliver(_webhook_call(ctx, parsed), ctx.settings)
        case EmailStep():
            return await _email(ctx, parsed)
        case SetCampaignStageStep():
            return await _set_campaign_stage(ctx, parsed)
        case UpdateFeatureFlagStep():
            return await _update_feature_flag(ctx, parsed)
        case DelayStep():
            raise ValueError("delay steps are run by the engine, not run_step")
    raise ValueError(f"unhandled step type {parsed.type!r}")  # pragma: no cover - the union is exhausted


def _as_json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)


def _actor(ctx: StepContext) -> Actor:
    # The audit log's actor types are fixed by a CHECK constraint (user, api_key, platform_admin,
    # system): a workflow acts as the system, named by its id.
    return Actor.system(f"workflow:{ctx.workflow_id}")


# --- webhook -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookCall:
    """A webhook delivery as prepared in the execution's transaction, to be made after it has committed."""

    url: httpx.URL
    body: bytes
    secret: str
    delivery: str  # the same for every attempt of the step: receivers drop the duplicates retries cause
    event: str
    timeout: float


def prepare_webhook(ctx: StepContext, step: dict[str, Any]) -> WebhookCall:
    """The delivery a webhook step makes (``StepRefused`` for an invalid step or URL). No I/O: the engine
    calls it in the execution's transaction and ``deliver`` after the commit."""
    parsed = _parse(step)
    if not isinstance(parsed, WebhookStep):
        raise ValueError(f"not a webhook step: {parsed.type!r}")
    return _webhook_call(ctx, parsed)


def _webhook_call(ctx: StepContext, step: WebhookStep) -> WebhookCall:
    body = orjson.dumps(
        {
            "workflow_id": str(ctx.workflow_id),
            "workflow_name": ctx.workflow_name,
            "execution_id": str(ctx.execution_id),
            "step": ctx.step_index,
            "event": ctx.trigger_event,
            "event_id": str(ctx.event_id) if ctx.event_id is not None else None,
            "payload": ctx.payload,
        }
    )
    return WebhookCall(
        url=_webhook_url(step.url), body=body, secret=ctx.secret, delivery=f"{ctx.execution_id}.{ctx.step_index}",
        event=ctx.trigger_event, timeout=min(step.timeout_seconds, MAX_WEBHOOK_TIMEOUT_SECONDS),
    )  # fmt: skip


async def deliver(call: WebhookCall, settings: Settings) -> dict[str, Any]:
    """POST the signed execution JSON; 2xx is success. Redirects are not followed (a redirect could
    lead anywhere, past the address check), proxies are ignored, and the connection goes to the
    address that was checked (``fetch.pinned_transport``), so a DNS answer that changes between the
    check and the connect has nothing to act on. From a private address (allowed by the settings) the
    result and the error keep the status only: a tenant never reads an internal server's answer."""
    url, timeout = call.url, call.timeout
    shown = _shown(url)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Castmetrics-Signature": sign(call.secret, int(time.time()), call.body),
        "X-Castmetrics-Delivery": call.delivery,
        "X-Castmetrics-Event": call.event,
    }
    try:
        # The deadline covers the lookup and the whole exchange: a receiver that drips its answer a
        # byte at a time never trips a read timeout.
        async with asyncio.timeout(timeout):
            addresses, private = await _checked_addresses(url, allow_private=_private_allowed(url, settings))
            client = _client(url.raw_host.decode("ascii"), addresses)
            async with client.stream(
                "POST",
                url,
                content=call.body,
                headers=headers,
                timeout=httpx.Timeout(timeout, connect=min(timeout, fetch.CONNECT_TIMEOUT)),
            ) as response:
                status = response.status_code
                text = "" if private else await _excerpt(response)
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise StepError(f"POST {shown} timed out after {timeout:g} s") from exc
    except httpx.ConnectError as exc:
        raise StepError(f"POST {shown} failed: could not connect to {url.host} ({exc})") from exc
    except httpx.HTTPError as exc:
        raise StepError(f"POST {shown} failed: {type(exc).__name__}: {exc}") from exc
    if not 200 <= status < 300:
        message = f"POST {shown} answered {status}"
        if 300 <= status < 400:
            message += " (redirects are not followed)"
        excerpt = " ".join(text.split())[:ERROR_EXCERPT_CHARS]
        raise StepError(f"{message}: {excerpt}" if excerpt else message)
    if private:
        return {"status_code": status}
    return {"status_code": status, "response": text}


def _private_allowed(url: httpx.URL, settings: Settings) -> bool:
    """Whether this URL may reach a private address: every URL when the operator allows private webhooks,
    else only a URL listed in ``private_webhook_urls`` exactly (the demo's own receiver)."""
    if settings.allow_private_webhooks:
        return True
    wanted = str(url.copy_with(fragment=None))
    for listed in settings.private_webhook_urls:
        try:
            if str(httpx.URL(listed).copy_with(fragment=None)) == wanted:
                return True
        except (httpx.InvalidURL, TypeError, ValueError):
            continue
    return False


# Webhook clients, one per (event loop, host, checked addresses), so deliveries to a receiver reuse
# kept-alive connections instead of connecting each time. Bounded: the least recently used is closed.
MAX_CLIENTS = 64
# Connections a client opens to its receiver at once. A client is shared by every tenant posting to that
# host, so one tenant's slow calls must not queue another's behind them: the limit is well above the
# calls a process makes at once (each tenant's are capped by ``workflow_webhooks_per_tenant``).
CONNECTIONS_PER_CLIENT = 100
_CLIENTS: OrderedDict[
    tuple[int, str, tuple[str, ...]], tuple[weakref.ref[asyncio.AbstractEventLoop], httpx.AsyncClient]
]
_CLIENTS = OrderedDict()
_CLOSING: set[asyncio.Task[None]] = set()


def _client(host: str, addresses: list[str]) -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    key = (id(loop), host, tuple(addresses))
    found = _CLIENTS.get(key)
    if found is not None and found[0]() is loop and not found[1].is_closed:
        _CLIENTS.move_to_end(key)
        return found[1]
    client = httpx.AsyncClient(
        transport=fetch.pinned_transport(host, addresses, max_connections=CONNECTIONS_PER_CLIENT),
        follow_redirects=False,
        trust_env=False,
    )
    _CLIENTS[key] = (weakref.ref(loop), client)
    while len(_CLIENTS) > MAX_CLIENTS:
        _, (owner, old) = _CLIENTS.popitem(last=False)
        if owner() is loop:
            task = loop.create_task(_close(old))
            _CLOSING.add(task)
            task.add_done_callback(_CLOSING.discard)
    return client


async def _close(client: httpx.AsyncClient) -> None:
    with contextlib.suppress(Exception):
        await client.aclose()


def _webhook_url(text: str) -> httpx.URL:
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise StepRefused(f"invalid webhook URL: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise StepRefused("a webhook URL must be http(s) with a host")
    return url


def _shown(url: httpx.URL) -> str:
    """The URL for messages (kept in the execution, shown to users): no credentials, no query."""
    return str(url.copy_with(userinfo=b"", query=None, fragment=None))


async def _checked_addresses(url: httpx.URL, *, allow_private: bool) -> tuple[list[str], bool]:
    """The addresses to connect to: an IP literal, or every address the host resolves to, each one
    public (``fetch.is_public_address``) unless private ones are allowed; and whether any is private.
    Refusal is final; a failed lookup is worth another try."""
    host = url.raw_host.decode("ascii")
    literal = _ip_literal(host)
    if literal is not None:
        candidates, what = [literal], "is"
    else:
        try:
            resolved = await fetch.resolve_host(host)
        except OSError as exc:
            raise StepError(f"could not resolve {url.host}: {exc}") from exc
        candidates = [address for address in map(_ip_literal, resolved) if address is not None]
        if not candidates or len(candidates) != len(resolved):
            raise StepError(f"could not resolve {url.host}: no usable addresses")
        what = "resolves to"
    private = not all(fetch.is_public_address(address) for address in candidates)
    if private and not allow_private:
        raise StepRefused(
            f"refused: {url.host} {what} a private, loopback, link-local or reserved address "
            "(webhooks go to public addresses only)"
        )
    return [str(address) for address in candidates], private


def _ip_literal(text: str) -> fetch.IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


async def _excerpt(response: httpx.Response) -> str:
    """The start of the answer, without reading more than is kept."""
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= RESPONSE_BYTES:
            break
    return bytes(data[:RESPONSE_BYTES]).decode("utf-8", errors="replace")[:RESPONSE_CHARS]


# --- email ---------------------------------------------------------------------------------------


async def _email(ctx: StepContext, step: EmailStep) -> dict[str, Any]:
    """Queue one message per recipient through the email module (delivered by its job). The workflow's
    creator must have a verified address; recipients are the tenant's own verified users (see
    ``_recipients``); the messages count against the tier's ``emails_per_day`` quota, all or none."""
    subject = " ".join(render(step.subject, ctx.payload).split())[:MAX_SUBJECT_CHARS]  # one header line
    body = render(step.body, ctx.payload)
    async with ctx.session.begin_nested():
        await _ensure_verified_sender(ctx)
        recipients, refused, left_out = await _recipients(ctx.session, ctx.tenant_id, step.to)
        if not recipients:
            if refused:
                raise StepRefused(
                    f"no recipients: {', '.join(refused)} is not the address of a verified user of this tenant"
                )
            raise StepError("no recipients")
        try:
            tenant = await tenancy.get(ctx.session, ctx.tenant_id)
            await quotas.ensure_room(ctx.session, tenant, "emails_per_day", adding=len(recipients))
        except QuotaExceeded as exc:
            raise StepRefused(exc.detail) from exc
        for address in recipients:
            await mail.queue(
                ctx.session, ctx.settings, tenant_id=ctx.tenant_id, kind="workflow", to=address,
                subject=subject or f"Workflow {ctx.workflow_name}", body=body,
            )  # fmt: skip
    result: dict[str, Any] = {"sent_to": recipients}
    if refused:
        result["refused"] = refused  # addresses that are no verified user's of the tenant
    if left_out:
        result["left_out"] = left_out  # past MAX_RECIPIENTS
    return result


async def _ensure_verified_sender(ctx: StepContext) -> None:
    """A workflow emails on behalf of its creator, who must have confirmed their own address (a workflow
    the platform created, such as the demo's, has no creator and is trusted)."""
    if ctx.created_by is None:
        return
    verified = await ctx.session.scalar(select(User.email_verified).where(User.id == ctx.created_by))
    if not verified:
        raise StepRefused("email steps send on behalf of the workflow's creator, whose email address is not verified")


async def _recipients(session: AsyncSession, tenant_id: uuid.UUID, to: EmailTo) -> tuple[list[str], list[str], int]:
    """The addresses of the named users, of the users holding any named role, and the literal addresses
    that are a user's, in that order, without duplicates (case-insensitive), at most ``MAX_RECIPIENTS``;
    the literal addresses refused; and how many were left out past the maximum.

    Only the tenant's active users with a verified address are reached: a step cannot mail outside
    addresses (no open relay), nor addresses a tenant admin typed in for a user who never confirmed them.
    Castmetrics has no verified sending domains, so a literal address must be such a user's."""
    reachable = and_(User.tenant_id == tenant_id, User.is_active, User.email_verified)
    addresses: list[str] = []
    if to.users:
        addresses += await session.scalars(
            select(User.email).where(reachable, User.id.in_(to.users)).order_by(User.email)
        )
    if to.roles:
        addresses += await session.scalars(
            select(User.email)
            .join(UserRole, and_(UserRole.tenant_id == User.tenant_id, UserRole.user_id == User.id))
            .join(Role, and_(Role.tenant_id == UserRole.tenant_id, Role.id == UserRole.role_id))
            .where(reachable, Role.name.in_(to.roles))
            .order_by(User.email)
        )
    refused: list[str] = []
    if to.addresses:
        literal = [str(address) for address in to.addresses]
        known = set(
            await session.scalars(
                select(func.lower(User.email)).where(
                    reachable, func.lower(User.email).in_([address.lower() for address in literal])
                )
            )
        )
        addresses += [address for address in literal if address.lower() in known]
        refused = [address for address in literal if address.lower() not in known]
    unique: dict[str, str] = {}
    for address in addresses:
        unique.setdefault(address.lower(), address)
    everyone = list(unique.values())
    return everyone[:MAX_RECIPIENTS], refused, max(0, len(everyone) - MAX_RECIPIENTS)


# --- campaign stage ------------------------------------------------------------------------------


async def _set_campaign_stage(ctx: StepContext, step: SetCampaignStageStep) -> dict[str, Any]:
    """Move the campaign along its stage machine as the sponsorship service does for a user (history,
    audit, ``campaign.stage_changed`` in the outbox). Already there is not an error."""
    campaign_id = step.campaign_id or _campaign_id_of(ctx.payload)
    try:
        async with ctx.session.begin_nested():
            campaign = await sponsorship.get_campaign(ctx.session, campaign_id, for_update=True)
            previous = campaign.stage
            if previous == step.stage:
                return {"campaign_id": str(campaign_id), "stage": previous, "unchanged": True}
            await sponsorship.transition(
                ctx.session, _actor(ctx), campaign, step.stage, step.reason or f"workflow {ctx.workflow_name}"
            )
    except NotFound as exc:
        raise StepRefused(f"no campaign {campaign_id}") from exc
    except Conflict as exc:
        raise StepRefused(exc.detail) from exc
    return {"campaign_id": str(campaign_id), "from": previous, "to": step.stage}


def _campaign_id_of(payload: dict[str, Any]) -> uuid.UUID:
    value = payload.get("campaign_id")
    if value is None:
        raise StepRefused("no campaign: the step names none and the payload has no campaign_id")
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise StepRefused(f"the payload's campaign_id {_as_json(value)} is not a campaign id") from exc


# --- feature flag --------------------------------------------------------------------------------


async def _update_feature_flag(ctx: StepContext, step: UpdateFeatureFlagStep) -> dict[str, Any]:
    """Set the tenant's override, audited and with the flag cache forgotten as for a user's change."""
    try:
        async with ctx.session.begin_nested():
            enabled = await flags.set_override_for(ctx.session, ctx.tenant_id, _actor(ctx), step.flag, step.enabled)
    except NotFound as exc:
        raise StepRefused(f"no feature flag named {step.flag!r}") from exc
    return {"flag": step.flag, "enabled": enabled}


__all__ = [
    "StepContext", "StepError", "StepRefused", "StepStopped", "WebhookCall", "condition_holds", "deliver", "lookup",
    "prepare_webhook", "render", "run_step", "sign",
]  # fmt: skip
