"""Report share links: created by who may update campaigns, opened without a login, refused when
tampered, revoked or expired, and never showing another tenant's data."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pypdf
import pytest
from sqlalchemy import text

from castmetrics.auth import tokens
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.measurement.recorder import Recorder
from tests.factories.reports import CAMPAIGN_NAME, Deal, make_deal


async def _create(client: httpx.AsyncClient, deal: Deal, role: str = "sales", **body: Any) -> httpx.Response:
    return await client.post(f"/v1/campaigns/{deal.campaign_id}/report-links", json=body, headers=deal.team.auth(role))


async def _link(client: httpx.AsyncClient, deal: Deal, **body: Any) -> dict[str, Any]:
    response = await _create(client, deal, **body)
    assert response.status_code == 201, response.text
    link: dict[str, Any] = response.json()
    return link


async def _audit(client: httpx.AsyncClient, deal: Deal, link_id: str) -> httpx.Response:
    params = {"entity_type": "report_link", "entity_id": link_id}
    return await client.get("/v1/audit-log", params=params, headers=deal.team.auth("owner"))


def _problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status


async def test_a_link_opens_the_report_without_a_login(client: httpx.AsyncClient, deal: Deal) -> None:
    # given a link made by the sales user
    before = datetime.now(UTC)
    link = await _link(client, deal, model="linear", lookback_days=7, expires_in_days=3)
    assert link["campaign_id"] == deal.campaign_id and link["model"] == "linear" and link["lookback_days"] == 7
    assert link["url"] == f"http://127.0.0.1:8000/v1/reports/{link['token']}"
    assert link["revoked_at"] is None and link["created_by"] == str(deal.team.user_ids["sales"])
    expires = datetime.fromisoformat(link["expires_at"])
    assert before + timedelta(days=3) <= expires <= datetime.now(UTC) + timedelta(days=3)

    # when anyone opens it, with no credentials
    shared = await client.get(f"/v1/reports/{link['token']}")

    # then it is the report, with the link's model and lookback, private and unindexed
    assert shared.status_code == 200, shared.text
    assert shared.headers["cache-control"] == "private, no-store"
    assert "noindex" in shared.headers["x-robots-tag"]
    assert shared.headers["referrer-policy"] == "no-referrer"
    report = shared.json()
    assert report["campaign"]["name"] == CAMPAIGN_NAME
    assert report["model"] == "linear" and report["lookback_days"] == 7
    same = await client.get(
        f"/v1/campaigns/{deal.campaign_id}/report",
        params={"model": "linear", "lookback_days": 7},
        headers=deal.team.auth("viewer"),
    )
    assert report["comparison"] == same.json()["comparison"]
    assert report["attribution"] == same.json()["attribution"]
    assert report["pacing"]["delivered"] == same.json()["pacing"]["delivered"] > 0

    # and as PDF and CSV downloads
    pdf = await client.get(f"/v1/reports/{link['token']}", params={"format": "pdf"})
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf.headers["cache-control"] == "private, no-store"
    assert "Linear" in pypdf.PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    csv = await client.get(f"/v1/reports/{link['token']}", headers={"Accept": "text/csv"})
    assert csv.status_code == 200 and csv.text.startswith("field,value")


async def test_links_are_listed_without_tokens_and_audited(client: httpx.AsyncClient, deal: Deal) -> None:
    first = await _link(client, deal)
    second = await _link(client, deal, expires_in_days=90)
    assert first["model"] == "last_touch" and first["lookback_days"] is None
    listed = await client.get(
        f"/v1/campaigns/{deal.campaign_id}/report-links", params={"limit": 1}, headers=deal.team.auth("viewer")
    )
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert [item["id"] for item in page["items"]] == [second["id"]] and page["next_cursor"]
    assert page["items"][0]["token"] is None and page["items"][0]["url"] is None
    rest = await client.get(
        f"/v1/campaigns/{deal.campaign_id}/report-links",
        params={"cursor": page["next_cursor"]},
        headers=deal.team.auth("viewer"),
    )
    assert [item["id"] for item in rest.json()["items"]] == [first["id"]] and rest.json()["next_cursor"] is None
    audit = await client.get(
        "/v1/audit-log",
        params={"entity_type": "report_link", "entity_id": first["id"]},
        headers=deal.team.auth("owner"),
    )
    entries = audit.json()["items"]
    assert [e["action"] for e in entries] == ["create"]
    assert entries[0]["actor_id"] == str(deal.team.user_ids["sales"])
    assert entries[0]["changes"]["model"] == {"before": None, "after": "last_touch"}


async def test_a_viewer_cannot_create_or_revoke_links(client: httpx.AsyncClient, deal: Deal) -> None:
    _problem(await _create(client, deal, role="viewer"), 403)
    _problem(await _create(client, deal, role="analyst"), 403)
    link = await _link(client, deal)
    revoked = await client.delete(
        f"/v1/campaigns/{deal.campaign_id}/report-links/{link['id']}", headers=deal.team.auth("viewer")
    )
    _problem(revoked, 403)
    _problem(await client.post(f"/v1/campaigns/{deal.campaign_id}/report-links", json={}), 401)


async def test_link_validation(client: httpx.AsyncClient, deal: Deal) -> None:
    for body in ({"expires_in_days": 0}, {"expires_in_days": 91}, {"lookback_days": 0}, {"lookback_days": 366},
                 {"model": "u_shaped"}, {"expires_at": "2030-01-01"}):  # fmt: skip
        response = await _create(client, deal, **body)
        _problem(response, 422)
        assert response.json()["type"].endswith("/validation"), body
    missing = await client.post(f"/v1/campaigns/{uuid.uuid4()}/report-links", json={}, headers=deal.team.auth("sales"))
    _problem(missing, 404)
    link = await _link(client, deal)
    unknown = await client.get(f"/v1/reports/{link['token']}", params={"format": "docx"})
    _problem(unknown, 422)


async def test_a_tampered_or_foreign_token_is_not_found(
    client: httpx.AsyncClient, deal: Deal, settings: Settings
) -> None:
    link = await _link(client, deal)
    token = link["token"]
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    secret = settings.secret_key.get_secret_value()
    other_purpose = tokens.sign(secret, "verify", {"tid": str(deal.team.tenant_id), "lid": link["id"],
                                                  "cid": deal.campaign_id}, timedelta(days=1))  # fmt: skip
    wrong_secret = tokens.sign("another-secret-key-of-sufficient-length", "report", {"tid": str(deal.team.tenant_id),
                               "lid": link["id"], "cid": deal.campaign_id}, timedelta(days=1))  # fmt: skip
    wrong_campaign = tokens.sign(secret, "report", {"tid": str(deal.team.tenant_id), "lid": link["id"],
                                                    "cid": str(uuid.uuid4())}, timedelta(days=1))  # fmt: skip
    no_claims = tokens.sign(secret, "report", {}, timedelta(days=1))
    access = deal.team.tokens["owner"]
    for bad in (f"{header}.{payload}.{flipped}", f"{header}.{payload[:-3]}xyz.{signature}", "not-a-token",
                other_purpose, wrong_secret, wrong_campaign, no_claims, access):  # fmt: skip
        response = await client.get(f"/v1/reports/{bad}")
        _problem(response, 404)
        assert CAMPAIGN_NAME not in response.text
    # with credentials it is the same: the token alone decides
    _problem(await client.get(f"/v1/reports/{header}.{payload}.{flipped}", headers=deal.team.auth("owner")), 404)


async def test_a_revoked_link_stops_working_at_once(client: httpx.AsyncClient, deal: Deal) -> None:
    link = await _link(client, deal)
    assert (await client.get(f"/v1/reports/{link['token']}")).status_code == 200
    path = f"/v1/campaigns/{deal.campaign_id}/report-links/{link['id']}"
    assert (await client.delete(path, headers=deal.team.auth("sales"))).status_code == 204
    _problem(await client.get(f"/v1/reports/{link['token']}"), 404)
    _problem(await client.get(f"/v1/reports/{link['token']}", params={"format": "pdf"}), 404)
    # revoking again changes nothing; the list shows when it was revoked
    assert (await client.delete(path, headers=deal.team.auth("sales"))).status_code == 204
    listed = await client.get(f"/v1/campaigns/{deal.campaign_id}/report-links", headers=deal.team.auth("sales"))
    assert listed.json()["items"][0]["revoked_at"] is not None
    audit = await _audit(client, deal, link["id"])
    assert [e["action"] for e in audit.json()["items"]] == ["revoke", "create"]
    _problem(await client.delete(f"{path[:-36]}{uuid.uuid4()}", headers=deal.team.auth("sales")), 404)


async def test_an_expired_link_is_gone(
    client: httpx.AsyncClient, deal: Deal, owner_db: Database, settings: Settings
) -> None:
    # given a link whose time ran out in the table (its token still inside its own lifetime)
    link = await _link(client, deal)
    async with owner_db.transaction() as session:
        await session.execute(
            text("UPDATE report_links SET expires_at = now() - interval '1 minute' WHERE id = :id"),
            {"id": uuid.UUID(link["id"])},
        )
    response = await client.get(f"/v1/reports/{link['token']}")
    _problem(response, 410)
    assert response.json()["type"].endswith("/gone") and "expired" in response.json()["detail"]
    assert response.headers["cache-control"] == "private, no-store"
    # and a token whose own lifetime is over, for a link that is still live
    live = await _link(client, deal)
    claims = {"tid": str(deal.team.tenant_id), "lid": live["id"], "cid": deal.campaign_id}
    stale = tokens.sign(settings.secret_key.get_secret_value(), "report", claims, timedelta(seconds=-5))
    _problem(await client.get(f"/v1/reports/{stale}"), 410)
    assert (await client.get(f"/v1/reports/{live['token']}")).status_code == 200


async def test_a_link_never_shows_another_tenants_data(  # type: ignore[no-untyped-def]
    client: httpx.AsyncClient, make_team, owner_db: Database, recorder: Recorder, settings: Settings
) -> None:
    # given two tenants, each with a campaign and a link
    a = await make_deal(client, await make_team("pro"), owner_db, recorder, name="Campaign of tenant A")
    b = await make_deal(client, await make_team("pro"), owner_db, recorder, name="Campaign of tenant B")
    link_a, link_b = await _link(client, a), await _link(client, b)
    # then each link shows its own tenant's campaign only
    assert (await client.get(f"/v1/reports/{link_a['token']}")).json()["campaign"]["id"] == a.campaign_id
    assert (await client.get(f"/v1/reports/{link_b['token']}")).json()["campaign"]["id"] == b.campaign_id
    # and a token naming A's tenant with B's link or campaign (even correctly signed) finds nothing
    secret = settings.secret_key.get_secret_value()
    for claims in (
        {"tid": str(a.team.tenant_id), "lid": link_b["id"], "cid": b.campaign_id},
        {"tid": str(a.team.tenant_id), "lid": link_a["id"], "cid": b.campaign_id},
        {"tid": str(b.team.tenant_id), "lid": link_a["id"], "cid": a.campaign_id},
    ):
        forged = tokens.sign(secret, "report", claims, timedelta(days=1))
        response = await client.get(f"/v1/reports/{forged}")
        _problem(response, 404)
        assert "tenant A" not in response.text and "tenant B" not in response.text
    # and tenant B cannot list, revoke or create links on A's campaign
    assert (
        await client.get(f"/v1/campaigns/{a.campaign_id}/report-links", headers=b.team.auth("owner"))
    ).status_code == 404
    revoke = await client.delete(
        f"/v1/campaigns/{a.campaign_id}/report-links/{link_a['id']}", headers=b.team.auth("owner")
    )
    assert revoke.status_code == 404
    assert (await client.get(f"/v1/reports/{link_a['token']}")).status_code == 200


def test_a_shared_link_opens_at_most_so_many_reports_a_minute() -> None:
    from castmetrics.errors import RateLimited
    from castmetrics.reports import router as reports_router

    start = 1_800_000_000.0  # a whole minute
    for n in range(reports_router.SHARED_PER_MINUTE):
        reports_router.count_shared_use("token-a", now=start + n)
    with pytest.raises(RateLimited) as refused:
        reports_router.count_shared_use("token-a", now=start + 45)
    assert refused.value.retry_after == 15  # until the minute ends
    reports_router.count_shared_use("token-b", now=start + 45)  # every link counts apart
    reports_router.count_shared_use("token-a", now=start + 60)  # and the next minute starts afresh


async def test_too_many_openings_answer_429(
    client: httpx.AsyncClient, deal: Deal, monkeypatch: pytest.MonkeyPatch
) -> None:
    from castmetrics.reports import router as reports_router

    link = await _link(client, deal)
    monkeypatch.setattr(reports_router, "SHARED_PER_MINUTE", 0)
    refused = await client.get(f"/v1/reports/{link['token']}")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.headers["content-type"] == "application/problem+json"
