"""Who may do what with sponsors, campaigns and bookings: owner, admin and sales write; analyst and viewer
read only (403 naming the permission); every role reads."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from castmetrics.identity.permissions import DEFAULT_ROLES
from tests.factories.catalog import make_podcast
from tests.factories.identity import Team
from tests.factories.sponsorship import booking_body, make_booking, make_campaign, make_sponsor

WRITERS = ("owner", "admin", "sales")
READERS = ("analyst", "viewer")

# (method, path, body, permission, status when allowed); {names} are filled from fresh objects per role.
ROUTES: list[tuple[str, str, dict[str, Any] | None, str, int]] = [
    ("GET", "/v1/sponsors", None, "sponsors:read", 200),
    ("POST", "/v1/sponsors", {"name": "New sponsor"}, "sponsors:create", 201),
    ("GET", "/v1/sponsors/{sponsor}", None, "sponsors:read", 200),
    ("PATCH", "/v1/sponsors/{sponsor}", {"name": "Renamed"}, "sponsors:update", 200),
    ("DELETE", "/v1/sponsors/{spare_sponsor}", None, "sponsors:delete", 204),
    ("GET", "/v1/campaigns", None, "campaigns:read", 200),
    ("POST", "/v1/campaigns", {"name": "New campaign"}, "campaigns:create", 201),
    ("GET", "/v1/campaigns/{campaign}", None, "campaigns:read", 200),
    ("PATCH", "/v1/campaigns/{campaign}", {"description": "Updated"}, "campaigns:update", 200),
    ("POST", "/v1/campaigns/{campaign}/transition", {"stage": "active"}, "campaigns:update", 200),
    ("GET", "/v1/campaigns/{campaign}/history", None, "campaigns:read", 200),
    ("GET", "/v1/campaigns/{campaign}/episodes", None, "bookings:read", 200),
    ("DELETE", "/v1/campaigns/{spare_campaign}", None, "campaigns:delete", 204),
    ("GET", "/v1/campaigns/{campaign}/bookings", None, "bookings:read", 200),
    ("POST", "/v1/campaigns/{campaign}/bookings", {"booking": True}, "bookings:create", 201),
    ("GET", "/v1/campaigns/{campaign}/bookings/{booking}", None, "bookings:read", 200),
    ("PATCH", "/v1/campaigns/{campaign}/bookings/{booking}", {"status": "confirmed"}, "bookings:update", 200),
    ("DELETE", "/v1/campaigns/{campaign}/bookings/{spare_booking}", None, "bookings:delete", 204),
]


def test_the_brief_matches_the_default_roles() -> None:
    for role in WRITERS:
        assert {
            f"{r}:{a}" for r in ("sponsors", "campaigns", "bookings") for a in ("create", "read", "update", "delete")
        } <= DEFAULT_ROLES[role][1]
    for role in READERS:
        granted = DEFAULT_ROLES[role][1]
        assert {"sponsors:read", "campaigns:read", "bookings:read"} <= granted
        assert not {
            p for p in granted if p.split(":")[0] in ("sponsors", "campaigns", "bookings") and not p.endswith(":read")
        }


@pytest.mark.parametrize("role", WRITERS + READERS)
async def test_role_matrix(role: str, client: httpx.AsyncClient, make_team) -> None:  # type: ignore[no-untyped-def]
    # given a tenant with one of everything, made by its sales user
    team: Team = await make_team()
    podcast_id = await make_podcast(client, team)
    sponsor = await make_sponsor(client, team)
    campaign = await make_campaign(client, team, sponsor_id=sponsor)
    names = {
        "sponsor": sponsor,
        "spare_sponsor": await make_sponsor(client, team, "Spare"),
        "campaign": campaign["id"],
        "spare_campaign": (await make_campaign(client, team))["id"],
        "booking": (await make_booking(client, team, campaign["id"], podcast_id))["id"],
        "spare_booking": (await make_booking(client, team, campaign["id"], podcast_id, placement="pre_roll"))["id"],
    }
    mismatches = []
    for method, template, body, permission, allowed_status in ROUTES:
        path = template.format(**names)
        payload = booking_body(podcast_id, placement="post_roll") if body == {"booking": True} else body
        # when the role calls the route
        response = await client.request(method, path, json=payload, headers=team.auth(role))
        # then writers (and everyone reading) get the route's answer, the others a 403 naming the permission
        may = role in WRITERS or permission.endswith(":read")
        if may and response.status_code != allowed_status:
            mismatches.append(f"{role} {method} {template}: {response.status_code} {response.text}")
        if not may and not (response.status_code == 403 and response.json().get("permission") == permission):
            mismatches.append(f"{role} not refused {method} {template}: {response.status_code} {response.text}")
    assert mismatches == []
    # and a refused write changed nothing
    if role in READERS:
        current = (await client.get(f"/v1/campaigns/{campaign['id']}", headers=team.auth(role))).json()
        assert (current["stage"], current["description"]) == ("draft", None)
        listed = (await client.get("/v1/sponsors", headers=team.auth(role))).json()["items"]
        assert sorted(s["name"] for s in listed) == ["Acme", "Spare"]


async def test_without_credentials_nothing_answers(client: httpx.AsyncClient) -> None:
    for method, template, body, _, _ in ROUTES:
        path = template.format(
            sponsor="00000000-0000-4000-8000-000000000000", spare_sponsor="00000000-0000-4000-8000-000000000000",
            campaign="00000000-0000-4000-8000-000000000000", spare_campaign="00000000-0000-4000-8000-000000000000",
            booking="00000000-0000-4000-8000-000000000000", spare_booking="00000000-0000-4000-8000-000000000000",
        )  # fmt: skip
        response = await client.request(method, path, json=body)
        assert response.status_code == 401, (method, template)
