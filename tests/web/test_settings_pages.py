"""The settings pages: users and roles, API keys (a new key shown once), feature flags, usage and billing,
each reading and changing through the API, with controls only for those the API lets change."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import SecretStr

from castmetrics.app import create_app
from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.web.templating import moment
from tests.factories.identity import Team
from tests.factories.web import csrf_of, sign_in
from tests.support.http import asgi_client
from tests.support.stripe import FakeStripe, serving_fake_stripe

KEY_SHOWN = re.compile(r'<code class="key" data-testid="new-key">([^<]+)</code>')
USAGE_ROW = re.compile(r'<tr data-testid="usage" data-quota="(\w+)" data-value="(\d+)" data-limit="(\d*)">')
FLAG_ROW = re.compile(r'<tr data-testid="flag" data-name="(\w+)" data-enabled="(true|false)">')


async def api(client: httpx.AsyncClient, team: Team, path: str, role: str = "owner") -> Any:
    answer = await client.get(path, headers=team.auth(role))
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_settings_redirects_to_its_first_tab_and_every_tab_renders(
    client: httpx.AsyncClient, make_team, pages
) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    owner = await pages(team, "owner")
    home = await owner.get("/settings")
    assert home.status_code == 303 and home.headers["location"] == "/settings/users"
    for path in ("/settings/users", "/settings/api-keys", "/settings/flags", "/settings/usage", "/settings/billing"):
        page = await owner.get(path)
        assert page.status_code == 200, path
        assert f'<a href="{path}" aria-current="page">' in page.text
        for other in ("/settings/users", "/settings/api-keys", "/settings/flags", "/settings/usage"):
            assert f'href="{other}"' in page.text

    # the viewer reads every tab but changes nothing: no forms but signing out
    viewer = await pages(team, "viewer")
    for path in ("/settings/users", "/settings/api-keys", "/settings/flags", "/settings/usage", "/settings/billing"):
        page = await viewer.get(path)
        assert page.status_code == 200, path
        assert re.findall(r'<form method="post" action="([^"]+)"', page.text) == ["/logout"], path

    # sales reads none of them: no tabs, and the API's 403 as a page
    sales = await pages(team, "sales")
    for path in ("/settings/users", "/settings/api-keys", "/settings/flags", "/settings/usage", "/settings/billing"):
        refused = await sales.get(path)
        assert refused.status_code == 403, path
        assert 'data-status="403"' in refused.text
    assert (await sales.get("/settings")).headers["location"] == "/settings/users"


async def test_users_and_roles_as_the_api_lists_them_and_roles_changed_through_the_form(
    client: httpx.AsyncClient, make_team, pages
) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    admin = await pages(team, "admin", tz="America/New_York")
    page = await admin.get("/settings/users")
    users = (await api(client, team, "/v1/users"))["items"]
    roles = {r["name"]: r for r in (await api(client, team, "/v1/roles"))["items"]}
    assert re.findall(r'<tr data-testid="user" data-id="([0-9a-f-]+)">', page.text) == [u["id"] for u in users]
    for user in users:
        assert user["email"] in page.text
        if user["last_login_at"]:
            assert moment(user["last_login_at"], ZoneInfo("America/New_York")) in page.text
    assert set(re.findall(r'<tr data-testid="role" data-name="(\w+)">', page.text)) == set(roles)
    assert "<code>billing:update</code>" in page.text  # the owner's permissions are listed
    viewer_id = str(team.user_ids["viewer"])
    assert f'action="/settings/users/{viewer_id}/roles"' in page.text
    csrf = csrf_of(page.text)

    changed = await admin.post(
        f"/settings/users/{viewer_id}/roles",
        data={"csrf_token": csrf, "role_id": [roles["analyst"]["id"], roles["sales"]["id"]]},
    )
    assert changed.status_code == 303 and changed.headers["location"] == "/settings/users?notice=roles"
    assert sorted((await api(client, team, f"/v1/users/{viewer_id}"))["roles"]) == ["analyst", "sales"]
    assert "The user&#39;s roles were changed." in (await admin.get(changed.headers["location"])).text

    # the API refuses what the admin may not grant: owner (billing) -> its 403 page, nothing changed
    escalated = await admin.post(
        f"/settings/users/{viewer_id}/roles", data={"csrf_token": csrf, "role_id": roles["owner"]["id"]}
    )
    assert escalated.status_code == 403
    assert sorted((await api(client, team, f"/v1/users/{viewer_id}"))["roles"]) == ["analyst", "sales"]

    # the last owner keeps the owner role: the API's 409 as an alert on the page
    owner = await pages(team, "owner")
    csrf_owner = csrf_of((await owner.get("/settings/users")).text)
    owner_id = str(team.user_ids["owner"])
    kept = await owner.post(
        f"/settings/users/{owner_id}/roles", data={"csrf_token": csrf_owner, "role_id": roles["admin"]["id"]}
    )
    assert kept.status_code == 409
    assert 'class="alert error"' in kept.text and "at least one active owner" in kept.text
    assert (await api(client, team, f"/v1/users/{owner_id}"))["roles"] == ["owner"]


async def test_inviting_a_user_and_the_users_quota(client: httpx.AsyncClient, make_team, pages) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team("pro")
    owner = await pages(team, "owner")
    page = await owner.get("/settings/users")
    roles = {r["name"]: r["id"] for r in (await api(client, team, "/v1/roles"))["items"]}
    invited = await owner.post(
        "/settings/users/invite",
        data={"csrf_token": csrf_of(page.text), "name": "New Person", "email": "new.person@example.com",
              "role_id": roles["analyst"]},
    )  # fmt: skip
    assert invited.status_code == 303 and invited.headers["location"] == "/settings/users?notice=invited"
    [new] = [u for u in (await api(client, team, "/v1/users"))["items"] if u["email"] == "new.person@example.com"]
    assert new["roles"] == ["analyst"] and new["name"] == "New Person"

    # a free network is over its users quota: the API's 402 on the page, the form kept
    free: Team = await make_team("free")
    free_owner = await pages(free, "owner")
    page = await free_owner.get("/settings/users")
    full = await free_owner.post(
        "/settings/users/invite",
        data={"csrf_token": csrf_of(page.text), "name": "One More", "email": "one.more@example.com"},
    )
    assert (
        full.status_code == 402 and 'class="alert error"' in full.text and 'value="one.more@example.com"' in full.text
    )

    # a viewer's crafted invitation (valid CSRF) is refused by the API
    viewer = await pages(team, "viewer")
    crafted = await viewer.post(
        "/settings/users/invite",
        data={"csrf_token": csrf_of((await viewer.get("/settings/users")).text), "name": "X", "email": "x@example.com"},
    )
    assert crafted.status_code == 403
    assert all(u["email"] != "x@example.com" for u in (await api(client, team, "/v1/users"))["items"])


async def test_an_owner_creates_a_key_sees_it_once_and_revokes_it(client: httpx.AsyncClient, make_team, pages) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    owner = await pages(team, "owner", tz="Europe/Berlin")
    page = await owner.get("/settings/api-keys")
    assert 'action="/settings/api-keys"' in page.text and 'data-testid="new-key"' not in page.text

    created = await owner.post(
        "/settings/api-keys", data={"csrf_token": csrf_of(page.text), "name": "Nightly export", "scope": ["read"]}
    )
    assert created.status_code == 201  # the page itself, not a redirect
    found = KEY_SHOWN.search(created.text)
    assert found
    key = found.group(1)
    # never in a cookie, a header or the URL
    assert all(key not in value for _, value in created.headers.multi_items())
    assert all(key not in str(value) for value in owner.cookies.values())

    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 200 and me.json()["api_key"]["name"] == "Nightly export"
    assert me.json()["api_key"]["scopes"] == ["read"]

    listed = await owner.get("/settings/api-keys")
    assert key not in listed.text and 'data-testid="new-key"' not in listed.text
    [stored] = (await api(client, team, "/v1/api-keys"))["items"]
    row = listed.text.split(f'data-id="{stored["id"]}"')[1].split("</tr>")[0]
    assert f"<code>{stored['prefix']}…</code>" in row and "Nightly export" in row
    assert stored["last_used_at"] and moment(stored["last_used_at"], ZoneInfo("Europe/Berlin")) in row
    assert 'data-confirm="Revoke the key' in row

    revoked = await owner.post(f"/settings/api-keys/{stored['id']}/revoke", data={"csrf_token": csrf_of(listed.text)})
    assert revoked.status_code == 303 and revoked.headers["location"] == "/settings/api-keys?notice=revoked"
    assert (await client.get("/v1/me", headers={"Authorization": f"Bearer {key}"})).status_code == 401
    [after] = (await api(client, team, "/v1/api-keys"))["items"]
    assert after["revoked_at"]
    shown = await owner.get(revoked.headers["location"])
    assert 'data-status="revoked"' in shown.text and "no longer works" in shown.text


async def test_key_form_errors_and_the_viewers_crafted_posts(client: httpx.AsyncClient, make_team, pages) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    owner = await pages(team, "owner")
    csrf = csrf_of((await owner.get("/settings/api-keys")).text)
    no_scope = await owner.post("/settings/api-keys", data={"csrf_token": csrf, "name": "Nothing"})
    assert no_scope.status_code == 422 and "at least one scope" in no_scope.text
    no_name = await owner.post("/settings/api-keys", data={"csrf_token": csrf, "name": "", "scope": "read"})
    assert no_name.status_code == 422 and 'class="alert error"' in no_name.text
    without_csrf = await owner.post("/settings/api-keys", data={"name": "Sneaky", "scope": "admin"})
    assert without_csrf.status_code == 403 and "Form expired" in without_csrf.text
    assert (await api(client, team, "/v1/api-keys"))["items"] == []

    kept = await client.post("/v1/api-keys", json={"name": "Kept", "scopes": ["read"]}, headers=team.auth("owner"))
    kept_key, kept_id = kept.json()["key"], kept.json()["id"]
    viewer = await pages(team, "viewer")
    csrf_viewer = csrf_of((await viewer.get("/settings/api-keys")).text)
    created = await viewer.post("/settings/api-keys", data={"csrf_token": csrf_viewer, "name": "Mine", "scope": "read"})
    assert created.status_code == 403 and 'data-testid="new-key"' not in created.text
    revoke = await viewer.post(f"/settings/api-keys/{kept_id}/revoke", data={"csrf_token": csrf_viewer})
    assert revoke.status_code == 403
    assert [k["name"] for k in (await api(client, team, "/v1/api-keys"))["items"]] == ["Kept"]
    assert (await client.get("/v1/me", headers={"Authorization": f"Bearer {kept_key}"})).status_code == 200


async def test_flags_as_the_api_answers_them_and_a_tenant_override(client: httpx.AsyncClient, make_team, pages) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    admin = await pages(team, "admin")
    page = await admin.get("/settings/flags")
    effective = await api(client, team, "/v1/feature-flags")
    assert dict(FLAG_ROW.findall(page.text)) == {name: str(on).lower() for name, on in effective.items()}
    assert effective["custom_roles"] is True
    csrf = csrf_of(page.text)

    off = await admin.post("/settings/flags/custom_roles", data={"csrf_token": csrf, "enabled": "false"})
    assert off.status_code == 303
    assert (await api(client, team, "/v1/feature-flags"))["custom_roles"] is False
    assert 'data-name="custom_roles" data-enabled="false"' in (await admin.get("/settings/flags")).text
    default = await admin.post("/settings/flags/custom_roles/default", data={"csrf_token": csrf})
    assert default.status_code == 303
    assert (await api(client, team, "/v1/feature-flags"))["custom_roles"] is True
    unknown = await admin.post("/settings/flags/no_such_flag", data={"csrf_token": csrf, "enabled": "true"})
    assert unknown.status_code == 404
    malformed = await admin.post("/settings/flags/Bad-Name", data={"csrf_token": csrf, "enabled": "true"})
    assert malformed.status_code == 404

    viewer = await pages(team, "viewer")
    csrf_viewer = csrf_of((await viewer.get("/settings/flags")).text)
    crafted = await viewer.post("/settings/flags/custom_roles", data={"csrf_token": csrf_viewer, "enabled": "false"})
    assert crafted.status_code == 403
    assert (await api(client, team, "/v1/feature-flags"))["custom_roles"] is True


async def test_usage_shows_the_apis_numbers(client: httpx.AsyncClient, make_team, pages) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team("free")
    created = await client.post(
        "/v1/workflows",
        json={"name": "W", "trigger_event": "campaign.created", "steps": [{"type": "delay", "seconds": 5}]},
        headers=team.auth("admin"),
    )
    assert created.status_code == 201
    http = await pages(team, "viewer")
    page = await http.get("/settings/usage")
    usage = await api(client, team, "/v1/tenant/usage", role="viewer")
    shown = {quota: (int(value), int(limit) if limit else None) for quota, value, limit in USAGE_ROW.findall(page.text)}
    assert shown == {quota: (q["usage"], q["limit"]) for quota, q in usage["quotas"].items()}
    assert shown["workflows"] == (1, 2) and shown["users"] == (5, 3)
    row = page.text.split('data-quota="workflows"')[1].split("</tr>")[0]
    assert 'style="width: 50.0%"' in row
    assert usage["period"] in page.text


async def test_billing_without_stripe_shows_the_503_message(client: httpx.AsyncClient, make_team, pages) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team("free")
    owner = await pages(team, "owner")
    page = await owner.get("/settings/billing")
    tenant = await api(client, team, "/v1/tenant")
    assert f'data-testid="tier">{tenant["subscription_tier"]}<' in page.text
    assert f'data-testid="subscription-status">{tenant["subscription_status"]}<' in page.text
    assert "Upgrade to Pro" in page.text and "Upgrade to Enterprise" in page.text and "Manage billing" in page.text
    csrf = csrf_of(page.text)
    for url, form in (("/settings/billing/checkout", {"tier": "pro"}), ("/settings/billing/portal", {})):
        answer = await owner.post(url, data={"csrf_token": csrf, **form})
        assert answer.status_code == 503, url
        assert 'class="alert warn"' in answer.text and "Stripe is not configured" in answer.text

    admin = await pages(team, "admin")
    page = await admin.get("/settings/billing")
    assert page.status_code == 200 and "Upgrade to" not in page.text and "Manage billing" not in page.text
    crafted = await admin.post("/settings/billing/checkout", data={"csrf_token": csrf_of(page.text), "tier": "pro"})
    assert crafted.status_code == 403 and "billing:update" in crafted.text
    assert (await owner.post("/settings/billing/checkout", data={"tier": "pro"})).status_code == 403  # no CSRF


@pytest.fixture
def stripe_stand_in() -> Iterator[FakeStripe]:
    with serving_fake_stripe() as fake:
        yield fake


@pytest.fixture
async def billing_app_page(
    settings: Settings, db: Database, stripe_stand_in: FakeStripe
) -> AsyncIterator[httpx.AsyncClient]:
    configured = settings.model_copy(
        update={
            "stripe_secret_key": SecretStr("sk_test_castmetrics"),
            "stripe_price_pro": "price_pro_test",
            "stripe_price_enterprise": "price_enterprise_test",
            "stripe_api_base": stripe_stand_in.base,
        }
    )
    async with asgi_client(create_app(configured, database=db)) as http:
        yield http


async def test_billing_sends_the_owner_to_stripe(billing_app_page: httpx.AsyncClient, make_team) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team("free")
    assert (await sign_in(billing_app_page, team.emails["owner"])).status_code == 303
    page = await billing_app_page.get("/settings/billing")
    csrf = csrf_of(page.text)

    early = await billing_app_page.post("/settings/billing/portal", data={"csrf_token": csrf})
    assert early.status_code == 409 and "no Stripe customer yet" in early.text
    checkout = await billing_app_page.post("/settings/billing/checkout", data={"csrf_token": csrf, "tier": "pro"})
    assert checkout.status_code == 303 and checkout.headers["location"].startswith("https://checkout.stripe.test/")
    portal = await billing_app_page.post("/settings/billing/portal", data={"csrf_token": csrf})
    assert portal.status_code == 303 and portal.headers["location"].startswith("https://portal.stripe.test/")
    gold = await billing_app_page.post("/settings/billing/checkout", data={"csrf_token": csrf, "tier": "gold"})
    assert gold.status_code == 422 and 'class="alert error"' in gold.text


async def test_foreign_and_bad_ids_are_404(client: httpx.AsyncClient, make_team, pages) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    other: Team = await make_team()
    theirs = await client.post("/v1/api-keys", json={"name": "Theirs", "scopes": ["read"]}, headers=other.auth("owner"))
    their_key = theirs.json()
    owner = await pages(team, "owner")
    csrf = csrf_of((await owner.get("/settings/users")).text)
    my_roles = {r["name"]: r["id"] for r in (await api(client, team, "/v1/roles"))["items"]}
    their_roles = {r["name"]: r["id"] for r in (await api(client, other, "/v1/roles"))["items"]}

    for url, form in (
        (f"/settings/api-keys/{their_key['id']}/revoke", {}),
        ("/settings/api-keys/not-a-uuid/revoke", {}),
        (f"/settings/users/{other.user_ids['viewer']}/roles", {"role_id": my_roles["analyst"]}),
        ("/settings/users/12345/roles", {"role_id": my_roles["analyst"]}),
        (f"/settings/users/{team.user_ids['viewer']}/roles", {"role_id": "not-a-role"}),
    ):
        missing = await owner.post(url, data={"csrf_token": csrf, **form})
        assert missing.status_code == 404, url
    # another tenant's role id is no role of this tenant: the API's 422 on the page
    foreign_role = await owner.post(
        f"/settings/users/{team.user_ids['viewer']}/roles", data={"csrf_token": csrf, "role_id": their_roles["admin"]}
    )
    assert foreign_role.status_code == 422 and "roles do not exist" in foreign_role.text
    assert (await api(client, team, f"/v1/users/{team.user_ids['viewer']}"))["roles"] == ["viewer"]
    assert (await client.get("/v1/me", headers={"Authorization": f"Bearer {their_key['key']}"})).status_code == 200


async def test_a_flag_name_with_a_line_break_is_not_a_flag(client: httpx.AsyncClient, make_team, pages) -> None:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    http = await pages(team, "owner")
    csrf = csrf_of((await http.get("/settings/flags")).text)
    answer = await http.post("/settings/flags/abc%0A", data={"csrf_token": csrf, "enabled": "true"})
    assert answer.status_code == 404
