"""Sponsor and campaign pages: what they show is the API's answer, the stage form follows the API's
permission and stage machine, and ids that are not the viewer's are 404 pages."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from castmetrics.config import Settings
from castmetrics.db.session import Database
from castmetrics.measurement.prefix import Buffer
from castmetrics.measurement.recorder import Recorder
from castmetrics.rollups import service as rollups_service
from tests.factories.identity import Team
from tests.factories.measurement import Show, make_show, request
from tests.factories.sponsorship import make_booking, make_campaign, make_sponsor
from tests.factories.web import csrf_of

MODELS = ("first_touch", "last_touch", "linear", "time_decay", "position_based")
FIGURES = ("conversions", "revenue", "spend", "roi", "roas", "cpa")
FIELD = re.compile(r'data-field="([a-z_]+)" data-value="([^"]*)"')
CARD = re.compile(r'<div class="model( selected)?" data-model="([a-z_]+)"')


@dataclass
class World:
    team: Team
    show: Show
    sponsor: str
    active: str  # a CPM booking on episode 0 and a run-of-show flat one, each half through its flight
    other: str  # the sponsor's other active campaign, whose touches make the models differ
    draft: str
    cpm: str
    flat: str


@pytest.fixture
def recorder(settings: Settings, db: Database, tmp_path: Path) -> Recorder:
    return Recorder(db, settings.model_copy(update={"data_dir": tmp_path}), Buffer())


def _touch(campaign: str, episode: str, listener: str, at: datetime, kind: str = "impression") -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "campaign_id": campaign, "episode_id": episode, "listener_id": listener,
            "attribution_type": kind, "occurred_at": at.isoformat()}  # fmt: skip


def _conversion(campaign: str, listener: str, revenue: float, at: datetime) -> dict[str, Any]:
    return {"campaign_id": campaign, "listener_id": listener, "attribution_type": "conversion",
            "attribution_data": {"revenue": revenue, "currency": "USD"}, "occurred_at": at.isoformat()}  # fmt: skip


@pytest.fixture
async def world(client: httpx.AsyncClient, make_team, owner_db: Database, recorder: Recorder) -> World:  # type: ignore[no-untyped-def]
    team: Team = await make_team()
    show = await make_show(client, team, owner_db, episodes=2)
    sponsor = await make_sponsor(client, team, "Acme Mattresses")
    active = (await make_campaign(client, team, "active", sponsor_id=sponsor, name="Spring push"))["id"]
    other = (await make_campaign(client, team, "active", sponsor_id=sponsor, name="Brand lift"))["id"]
    draft = (await make_campaign(client, team, "draft", sponsor_id=sponsor, name="Autumn idea"))["id"]
    today = datetime.now(UTC).date()
    # A 20-day flight half over at midnight today: 10 booked impressions expect 5 all day long.
    flight = {"flight_start": (today - timedelta(days=10)).isoformat(),
              "flight_end": (today + timedelta(days=9)).isoformat()}  # fmt: skip
    cpm = await make_booking(
        client, team, active, show.podcast_id, episode_id=show.episode_ids[0], booked_impressions=10, **flight
    )
    flat = await make_booking(
        client, team, active, show.podcast_id, placement="pre_roll", pricing_model="flat", rate_minor=100_000,
        booked_impressions=10, **flight,
    )  # fmt: skip
    yesterday = datetime.combine(today - timedelta(days=1), time(12), UTC)
    for n in range(6):  # six listeners download episode 0 yesterday
        recorder.buffer.append(request(show, 0, address=f"198.18.7.{n + 1}", at=yesterday))
    await recorder.flush()
    await rollups_service.refresh_all(recorder.db)
    now = datetime.now(UTC).replace(microsecond=0)
    ep0, ep1 = show.episode_ids
    events = [
        # L1: the other campaign first, this one last; L2: this campaign only; L3: this one twice.
        _touch(other, ep1, "l1", now - timedelta(days=5)),
        _touch(active, ep0, "l1", now - timedelta(days=1), "click"),
        _conversion(active, "l1", 120.0, now - timedelta(hours=1)),
        _touch(active, ep0, "l2", now - timedelta(days=2)),
        _conversion(active, "l2", 80.0, now - timedelta(hours=2)),
        _touch(active, ep1, "l3", now - timedelta(days=3)),
        _touch(other, ep0, "l3", now - timedelta(days=2)),
        _touch(active, ep0, "l3", now - timedelta(days=1)),
        _conversion(other, "l3", 50.0, now - timedelta(hours=3)),
    ]
    posted = await client.post("/v1/events/attribution", json=events, headers=team.auth("owner"))
    assert posted.status_code == 200 and posted.json()["rejected"] == [], posted.text
    return World(team, show, sponsor, active, other, draft, str(cpm["id"]), str(flat["id"]))


async def api(client: httpx.AsyncClient, team: Team, path: str, role: str = "viewer", **params: Any) -> Any:
    response = await client.get(path, params=params, headers=team.auth(role))
    assert response.status_code == 200, response.text
    return response.json()


def rows(html: str, testid: str) -> dict[str, dict[str, str]]:
    """Each ``<tr data-testid=… data-…="key">`` row of the page: its ``data-field`` values, by key."""
    found = {}
    for match in re.finditer(rf'<tr data-testid="{testid}" data-[a-z]+="([^"]+)"(.*?)</tr>', html, re.S):
        found[match.group(1)] = dict(FIELD.findall(match.group(2)))
    return found


def cards(html: str) -> dict[str, tuple[bool, dict[str, str]]]:
    """The attribution cards: whether each is selected, and its figures."""
    found = {}
    starts = list(CARD.finditer(html))
    for match in starts:
        chunk = html[match.end() : html.index("</dl>", match.end())]
        found[match.group(2)] = (bool(match.group(1)), dict(FIELD.findall(chunk)))
    return found


def number(value: str) -> float | None:
    return None if value == "" else float(value)


def stage_on(html: str) -> str:
    found = re.search(r'<span data-testid="stage">([a-z]+)</span>', html)
    assert found, "the page shows no stage"
    return found.group(1)


async def stage_of(client: httpx.AsyncClient, team: Team, campaign_id: str) -> str:
    return str((await api(client, team, f"/v1/campaigns/{campaign_id}"))["stage"])


async def test_pages_need_a_session(client: httpx.AsyncClient) -> None:
    for path in ("/sponsors", "/campaigns", f"/campaigns/{uuid.uuid4()}"):
        answer = await client.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")


async def test_sponsors_list_and_sponsor_page_for_a_viewer(client: httpx.AsyncClient, world: World, pages) -> None:  # type: ignore[no-untyped-def]
    http = await pages(world.team, "viewer")
    listed = await http.get("/sponsors")
    assert listed.status_code == 200, listed.text
    assert f'<a href="/sponsors/{world.sponsor}">Acme Mattresses</a>' in listed.text
    assert rows(listed.text, "sponsor-row")[world.sponsor] == {"campaigns": "3"}

    page = await http.get(f"/sponsors/{world.sponsor}")
    assert page.status_code == 200, page.text
    for campaign_id, name in ((world.active, "Spring push"), (world.other, "Brand lift"), (world.draft, "Autumn idea")):
        assert f'<a href="/campaigns/{campaign_id}">{name}</a>' in page.text
    assert rows(page.text, "campaign-row")[world.draft] == {"stage": "draft"}
    # The podcast matches, as the API scores them.
    matches = await api(client, world.team, f"/v1/sponsors/{world.sponsor}/matches", limit=20)
    shown = rows(page.text, "match-row")
    assert list(shown) == [item["podcast_id"] for item in matches["items"]] == [world.show.podcast_id]
    for item in matches["items"]:
        figures = shown[item["podcast_id"]]
        assert float(figures["score"]) == item["score"]
        for component in ("audience", "listen_through", "conversion_rate", "inventory"):
            assert float(figures[component]) == item["components"][component]["score"]


async def test_campaigns_list_filters_by_stage_and_paces_running_campaigns(world: World, pages) -> None:  # type: ignore[no-untyped-def]
    http = await pages(world.team, "viewer")
    everything = await http.get("/campaigns")
    assert everything.status_code == 200, everything.text
    shown = rows(everything.text, "campaign-row")
    assert set(shown) == {world.active, world.other, world.draft}
    assert shown[world.active] == {"stage": "active", "delivered": "12", "status": "ahead"}  # both bookings: 6 each
    assert shown[world.draft] == {"stage": "draft"}
    assert "Acme Mattresses" in everything.text

    drafts = await http.get("/campaigns", params={"stage": "draft"})
    assert set(rows(drafts.text, "campaign-row")) == {world.draft}
    assert '<option value="draft" selected>' in drafts.text
    unknown = await http.get("/campaigns", params={"stage": "launched"})  # not a stage: no filter
    assert unknown.status_code == 200 and len(rows(unknown.text, "campaign-row")) == 3


async def test_campaign_page_shows_the_apis_pacing_and_the_five_models(
    client: httpx.AsyncClient, world: World, pages
) -> None:  # type: ignore[no-untyped-def]
    http = await pages(world.team, "viewer")
    page = await http.get(f"/campaigns/{world.active}")
    assert page.status_code == 200, page.text
    html = page.text
    pacing = await api(client, world.team, f"/v1/campaigns/{world.active}/pacing")
    compare = await api(client, world.team, "/v1/attribution/compare", campaign_id=world.active)

    assert stage_on(html) == "active"
    assert f'<a href="/sponsors/{world.sponsor}" data-testid="sponsor">Acme Mattresses</a>' in html
    assert 'data-testid="pacing"' in html
    # One row per live booking, each number the pacing route's.
    booking_rows = rows(html, "booking-row")
    assert list(booking_rows) == [b["booking_id"] for b in pacing["bookings"]]
    assert set(booking_rows) == {world.cpm, world.flat}
    for booking in pacing["bookings"]:
        shown = booking_rows[booking["booking_id"]]
        for field in ("booked", "delivered", "expected_to_date", "projected", "status", "placement"):
            assert shown[field] == str(booking[field]), field
        assert number(shown["pace"]) == booking["pace"]
    cpm = booking_rows[world.cpm]
    assert (cpm["booked"], cpm["delivered"], cpm["expected_to_date"], cpm["status"]) == ("10", "6", "5", "ahead")
    assert float(cpm["spend_to_date"]) == 0.15  # 25.00 USD CPM × 6 / 1000
    assert "25.00 USD CPM" in html and "1,000.00 USD flat" in html
    # The bar: filled to delivered of booked (60%), the mark at expected of booked (50%).
    row = re.search(rf'data-booking="{world.cpm}"(.*?)</tr>', html, re.S)
    assert row and 'class="bar ahead"' in row.group(1)
    assert 'style="width: 60.0%"' in row.group(1) and 'style="left: 50.0%"' in row.group(1)
    total = dict(FIELD.findall(re.search(r'data-testid="pacing-total"(.*?)</tr>', html, re.S).group(1)))  # type: ignore[union-attr]
    for field in ("booked", "delivered", "expected_to_date", "status"):
        assert total[field] == str(pacing[field])
    assert (total["booked"], total["delivered"], total["expected_to_date"]) == ("20", "12", "10")

    # The five models, from the compare answer, last touch chosen by default.
    shown_models = cards(html)
    assert list(shown_models) == list(MODELS)
    assert [name for name, (selected, _) in shown_models.items() if selected] == ["last_touch"]
    answers = {item["model"]: item for item in compare["models"]}
    for model in MODELS:
        figures = shown_models[model][1]
        for field in FIGURES:
            assert number(figures[field]) == answers[model][field], (model, field)
    # The touches make the models differ: L1's conversion is the other campaign's under first touch.
    assert answers["first_touch"]["conversions"] != answers["last_touch"]["conversions"]
    assert answers["last_touch"]["roi"] is not None
    assert 'data-testid="model-podcasts"' in html and "Measured" in html
    # A viewer may not change the stage: no form.
    assert 'id="stage-form"' not in html and "/stage" not in html


async def test_the_model_switcher_selects_a_model_and_shows_its_detail(
    client: httpx.AsyncClient, world: World, pages
) -> None:  # type: ignore[no-untyped-def]
    http = await pages(world.team, "analyst")
    page = await http.get(f"/campaigns/{world.active}", params={"model": "linear"})
    assert page.status_code == 200
    html = page.text
    assert '<form id="model-form" method="get"' in html and '<select name="model" data-autosubmit>' in html
    assert '<option value="linear" selected>' in html and ">Apply</button>" in html
    assert [name for name, (selected, _) in cards(html).items() if selected] == ["linear"]
    assert '<div class="model selected" data-model="linear"' in html
    linear = next(
        m for m in (await api(client, world.team, "/v1/attribution/compare", campaign_id=world.active))["models"]
        if m["model"] == "linear"
    )  # fmt: skip
    detail = html[html.index('data-testid="model-detail" data-chosen="linear"') :]
    podcasts = re.search(r'data-testid="model-podcasts"(.*?)</table>', detail, re.S)
    assert podcasts
    shown = dict(FIELD.findall(podcasts.group(1)))
    assert float(shown["conversions"]) == linear["podcasts"][0]["conversions"]
    assert float(shown["revenue"]) == linear["podcasts"][0]["revenue"]
    # An unknown model is the default one.
    fallback = await http.get(f"/campaigns/{world.active}", params={"model": "made_up"})
    assert [name for name, (selected, _) in cards(fallback.text).items() if selected] == ["last_touch"]


@pytest.mark.parametrize(("role", "shown"), [("owner", True), ("sales", True), ("admin", True),
                                             ("analyst", False), ("viewer", False)])  # fmt: skip
async def test_the_stage_form_follows_the_campaigns_update_permission(
    world: World, pages, role: str, shown: bool
) -> None:  # type: ignore[no-untyped-def]
    http = await pages(world.team, role)
    html = (await http.get(f"/campaigns/{world.draft}")).text
    assert ('<form id="stage-form" method="post" action="/campaigns/' in html) is shown
    if shown:
        form = html[html.index('id="stage-form"') : html.index("</form>", html.index('id="stage-form"'))]
        assert re.findall(r'<option value="([a-z]+)"', form) == ["active", "cancelled"]  # the draft's next stages
        assert '<select name="stage"' in form and ">Change stage</button>" in form and 'name="csrf_token"' in form


async def test_a_viewer_who_posts_the_stage_form_is_refused(client: httpx.AsyncClient, world: World, pages) -> None:  # type: ignore[no-untyped-def]
    http = await pages(world.team, "viewer")
    token = csrf_of((await http.get(f"/campaigns/{world.draft}")).text)
    refused = await http.post(f"/campaigns/{world.draft}/stage", data={"csrf_token": token, "stage": "active"})
    assert refused.status_code == 403
    assert 'class="alert error"' in refused.text and 'data-status="403"' in refused.text
    assert await stage_of(client, world.team, world.draft) == "draft"


async def test_the_owner_changes_the_stage(client: httpx.AsyncClient, world: World, pages) -> None:  # type: ignore[no-untyped-def]
    http = await pages(world.team, "owner")
    token = csrf_of((await http.get(f"/campaigns/{world.draft}")).text)
    form = {"csrf_token": token, "stage": "active", "reason": "Signed the IO", "model": "linear"}
    moved = await http.post(f"/campaigns/{world.draft}/stage", data=form)
    assert moved.status_code == 303, moved.text
    assert moved.headers["location"] == f"/campaigns/{world.draft}?changed=1&model=linear"
    assert await stage_of(client, world.team, world.draft) == "active"
    history = await api(client, world.team, f"/v1/campaigns/{world.draft}/history")
    assert (history["items"][0]["to_stage"], history["items"][0]["reason"]) == ("active", "Signed the IO")
    after = await http.get(moved.headers["location"])
    assert 'class="alert ok"' in after.text and 'data-testid="stage-changed"' in after.text
    assert stage_on(after.text) == "active"
    assert '<div class="model selected" data-model="linear"' in after.text
    # The form now offers the active campaign's next stages.
    assert re.findall(r'<option value="([a-z]+)"', after.text[after.text.index('id="stage-form"') :])[:3] == [
        "paused", "completed", "cancelled"
    ]  # fmt: skip


async def test_an_illegal_stage_is_a_409_on_the_page_and_changes_nothing(
    client: httpx.AsyncClient, world: World, pages
) -> None:  # type: ignore[no-untyped-def]
    http = await pages(world.team, "sales")
    token = csrf_of((await http.get(f"/campaigns/{world.active}")).text)
    illegal = await http.post(
        f"/campaigns/{world.active}/stage", data={"csrf_token": token, "stage": "draft", "reason": "Oops"}
    )
    assert illegal.status_code == 409
    assert 'class="alert error"' in illegal.text and 'data-testid="stage-error"' in illegal.text
    assert "cannot go from active to draft" in illegal.text
    # The page is whole again: stage, pacing and the models, with the reason typed kept.
    assert stage_on(illegal.text) == "active"
    assert len(rows(illegal.text, "booking-row")) == 2 and len(cards(illegal.text)) == 5
    assert 'name="reason" maxlength="2000" value="Oops"' in illegal.text
    assert await stage_of(client, world.team, world.active) == "active"
    # Not a stage at all: the API's 422, shown the same way.
    invalid = await http.post(f"/campaigns/{world.active}/stage", data={"csrf_token": token, "stage": "launched"})
    assert invalid.status_code == 422 and 'data-testid="stage-error"' in invalid.text
    assert await stage_of(client, world.team, world.active) == "active"


async def test_a_stage_post_without_its_csrf_token_is_refused(client: httpx.AsyncClient, world: World, pages) -> None:  # type: ignore[no-untyped-def]
    http = await pages(world.team, "owner")
    await http.get(f"/campaigns/{world.draft}")
    missing = await http.post(f"/campaigns/{world.draft}/stage", data={"stage": "active"})
    assert missing.status_code == 403 and "Form expired" in missing.text
    forged = await http.post(f"/campaigns/{world.draft}/stage", data={"stage": "active", "csrf_token": "0" * 64})
    assert forged.status_code == 403
    assert await stage_of(client, world.team, world.draft) == "draft"


async def test_missing_malformed_and_foreign_ids_are_404_pages(
    client: httpx.AsyncClient, world: World, make_team, pages
) -> None:  # type: ignore[no-untyped-def]
    stranger: Team = await make_team()
    theirs = (await make_campaign(client, stranger, "draft", name="Not yours"))["id"]
    their_sponsor = await make_sponsor(client, stranger, "Not yours either")
    http = await pages(world.team, "owner")
    for path in (
        "/campaigns/not-a-uuid", f"/campaigns/{uuid.uuid4()}", f"/campaigns/{theirs}",
        "/sponsors/12345", f"/sponsors/{uuid.uuid4()}", f"/sponsors/{their_sponsor}",
    ):  # fmt: skip
        answer = await http.get(path)
        assert answer.status_code == 404, path
        assert 'data-status="404"' in answer.text and "Not yours" not in answer.text
    token = csrf_of((await http.get(f"/campaigns/{world.draft}")).text)
    for campaign_id in (theirs, "nope"):
        posted = await http.post(f"/campaigns/{campaign_id}/stage", data={"csrf_token": token, "stage": "active"})
        assert posted.status_code == 404
    assert (await api(client, stranger, f"/v1/campaigns/{theirs}"))["stage"] == "draft"


async def test_the_sponsor_report_downloads_with_the_session(
    client: httpx.AsyncClient, world: World, pages, make_team
) -> None:  # type: ignore[no-untyped-def]
    http = await pages(world.team, "analyst")
    page = await http.get(f"/campaigns/{world.active}")
    assert f'href="/campaigns/{world.active}/report?format=pdf"' in page.text
    pdf = await http.get(f"/campaigns/{world.active}/report", params={"format": "pdf"})
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF") and "attachment" in pdf.headers["content-disposition"]
    shown = await http.get(f"/campaigns/{world.active}/report", params={"format": "json"})
    expected = (await api(client, world.team, f"/v1/campaigns/{world.active}/report"))["pacing"]
    delivered = {b["booking_id"]: b["delivered"] for b in shown.json()["pacing"]["bookings"]}
    assert delivered == {b["booking_id"]: b["delivered"] for b in expected["bookings"]} and delivered
    csv = await http.get(f"/campaigns/{world.active}/report", params={"format": "csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert (await http.get(f"/campaigns/{world.active}/report", params={"format": "exe"})).status_code == 404
    stranger: Team = await make_team()
    foreign = await (await pages(stranger, "owner")).get(f"/campaigns/{world.active}/report")
    assert foreign.status_code == 404 and foreign.headers["content-type"].startswith("text/html")
