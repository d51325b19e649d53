"""The dashboard in a real browser (Debian's Chromium under Playwright) over the demo network: sign in
with the keyboard, open every page at 1280 px and phone size, check that the numbers shown are the API's,
switch attribution models, change a campaign's stage, and keep a screenshot of each page."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import Browser, BrowserContext, Dialog, Page, expect

from castmetrics.config import Settings
from castmetrics.db.session import Database
from tests.support.browser import DESKTOP, PHONE, seed_demo, shoot

ZONE = "America/New_York"  # the browser's zone, which the dashboard must show dates in
MODELS = ("first_touch", "last_touch", "linear", "time_decay", "position_based")


async def _number(page: Page, selector: str) -> float | None:
    raw = await page.locator(selector).first.get_attribute("data-value")
    return None if raw in (None, "") else float(raw)


def _close(shown: float | None, expected: Any) -> bool:
    if expected is None or shown is None:
        return shown is None and expected is None
    return abs(shown - float(expected)) <= 1e-6 * max(1.0, abs(float(expected)))


async def _sign_in(browser: Browser, base: str, email: str, password: str) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(viewport=DESKTOP, timezone_id=ZONE, locale="en-US", base_url=base)
    page = await context.new_page()
    await page.goto("/?days=7")
    assert page.url.startswith(f"{base}/login?next="), page.url  # sent to sign in, and back afterwards
    # Keyboard only: the email field has focus, Tab to the password, Enter submits.
    await expect(page.locator("input[name=email]")).to_be_focused()
    await page.keyboard.type(email)
    await page.keyboard.press("Tab")
    await page.keyboard.type(password)
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{base}/?days=7")
    return context, page


async def _phone_shot(browser: Browser, context: BrowserContext, base: str, path: str, name: str) -> None:
    """The same page on a phone-sized screen: nothing wider than the screen, the menu behind a button."""
    phone = await browser.new_context(
        viewport=PHONE, is_mobile=True, has_touch=True, timezone_id=ZONE, base_url=base,
        storage_state=await context.storage_state(),
    )  # fmt: skip
    page = await phone.new_page()
    await page.goto(path)
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{path} is {overflow} px wider than a phone"
    toggle = page.locator(".nav-toggle")
    await expect(toggle).to_be_visible()
    await expect(page.locator("#nav")).to_be_hidden()
    await toggle.click()
    await expect(page.locator("#nav")).to_be_visible()
    await shoot(page, f"{name}-phone")
    await phone.close()


async def test_a_tour_of_the_dashboard_in_chromium(
    browser: Browser, live_server: str, owner_db: Database, db: Database, settings: Settings
) -> None:
    demo = await seed_demo(owner_db, db, settings)
    logins = {role: (email, password) for role, email, password in demo.logins}
    async with httpx.AsyncClient(base_url=live_server, timeout=60) as http:
        token = await http.post("/v1/auth/login", json=dict(zip(("email", "password"), logins["owner"], strict=True)))
        http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

        async def api(path: str, **params: Any) -> Any:
            answer = await http.get(path, params=params)
            assert answer.status_code == 200, answer.text
            return answer.json()

        context, page = await _sign_in(browser, live_server, *logins["owner"])
        visited: list[tuple[str, str]] = []  # (path, name): each is shot again on a phone-sized screen

        async def shot(name: str) -> None:
            await shoot(page, name)
            visited.append((page.url.removeprefix(live_server), name))

        # --- overview: the tenant's numbers in the browser's zone, equal to the API's ---------------
        await page.goto("/")
        await expect(page.locator("[data-testid=zone]")).to_have_text(ZONE)
        period = page.locator("form.period")
        span = {"from": await period.get_attribute("data-from"), "to": await period.get_attribute("data-to")}
        summary = await api("/v1/analytics/tenant/summary", **span, tz=ZONE)
        by_metric = {m["metric"]: m["value"] for m in summary["metrics"]}
        for metric in ("downloads", "plays", "completes", "unique_listeners"):
            shown = await _number(page, f".kpi[data-metric={metric}] .value")
            assert _close(shown, by_metric[metric]), (metric, shown, by_metric[metric])
        assert by_metric["downloads"] > 0 and by_metric["plays"] > 0
        listeners = await api("/v1/analytics/tenant/summary", **span, metric="listeners")
        assert _close(await _number(page, ".kpi[data-metric=listeners] .value"), listeners["metrics"][0]["value"])
        top = await api("/v1/analytics/tenant/top-episodes", **span, tz=ZONE, metric="downloads", limit=10)
        shown_top = page.locator("[data-testid=top-episodes] td.num")
        assert await shown_top.count() == len(top["items"]) > 0
        assert _close(await _number(page, "[data-testid=top-episodes] td.num"), top["items"][0]["value"])
        await expect(page.locator("svg.chart").first).to_be_visible()
        await shot("overview")

        # --- a podcast and one of its episodes -----------------------------------------------------
        await page.locator("[data-testid=podcasts] a").first.click()
        await page.wait_for_url("**/podcasts/*")
        podcast_id = page.url.rsplit("/", 1)[-1].split("?")[0]
        podcast_summary = await api(f"/v1/analytics/podcasts/{podcast_id}/summary", **span, tz=ZONE)
        downloads = next(m["value"] for m in podcast_summary["metrics"] if m["metric"] == "downloads")
        assert _close(await _number(page, ".kpi[data-metric=downloads] .value"), downloads)
        await expect(page.locator("[data-testid=launch]")).to_be_visible()
        await shot("podcast")
        await page.locator("[data-testid=episodes] a").first.click()
        await page.wait_for_url("**/episodes/*")
        episode_id = page.url.rsplit("/", 1)[-1].split("?")[0]
        episode_summary = await api(f"/v1/analytics/episodes/{episode_id}/summary", **span, tz=ZONE)
        plays = next(m["value"] for m in episode_summary["metrics"] if m["metric"] == "plays")
        assert _close(await _number(page, ".kpi[data-metric=plays] .value"), plays)
        await shot("episode")

        # --- sponsors ---------------------------------------------------------------------------------
        await page.goto("/sponsors")
        await expect(page.get_by_role("link", name="Brightline Mattresses")).to_be_visible()
        await shot("sponsors")
        await page.get_by_role("link", name="Brightline Mattresses").click()
        await page.wait_for_url("**/sponsors/*")
        await shot("sponsor")

        # --- campaigns: pacing, the five models side by side, switching, changing the stage -----------
        await page.goto("/campaigns")
        await shot("campaigns")
        await page.get_by_role("link", name="Always-on host reads").click()
        await page.wait_for_url("**/campaigns/*")
        campaign_id = page.url.rsplit("/", 1)[-1].split("?")[0]
        pacing = await api(f"/v1/campaigns/{campaign_id}/pacing")
        rows = page.locator("[data-testid=booking-row]")
        assert await rows.count() == len(pacing["bookings"]) > 0
        delivered = sorted([float(await rows.nth(n).locator("[data-field=delivered]").get_attribute("data-value") or 0)
                            for n in range(await rows.count())])  # fmt: skip
        assert delivered == sorted(float(b["delivered"]) for b in pacing["bookings"])
        compare = await api("/v1/attribution/compare", campaign_id=campaign_id)
        for answer in compare["models"]:
            card = f".model[data-model={answer['model']}]"
            for field in ("conversions", "roi", "roas", "cpa"):
                shown = await _number(page, f"{card} [data-field={field}]")
                assert _close(shown, answer[field]), (answer["model"], field, shown, answer[field])
        await expect(page.locator(".model.selected")).to_have_attribute("data-model", "last_touch")
        await shot("campaign")
        for model in ("linear", "time_decay", "first_touch"):
            await page.locator("#model-form select[name=model]").select_option(model)
            await page.wait_for_url(f"**model={model}*")
            await expect(page.locator(".model.selected")).to_have_attribute("data-model", model)
        await shot("campaign-first-touch")

        await page.goto("/campaigns")
        await page.get_by_role("link", name="Holiday push").click()
        await page.wait_for_url("**/campaigns/*")
        holiday = page.url.rsplit("/", 1)[-1].split("?")[0]
        await expect(page.locator("[data-testid=stage]")).to_have_text("paused")
        await page.locator("#stage-form select[name=stage]").select_option("active")
        asked: list[str] = []

        async def accept(dialog: Dialog) -> None:
            asked.append(dialog.message)
            await dialog.accept()

        page.once("dialog", accept)
        await page.locator("#stage-form button[type=submit]").click()
        await page.wait_for_url(f"**/campaigns/{holiday}*")
        await expect(page.locator("[data-testid=stage]")).to_have_text("active")
        assert (await api(f"/v1/campaigns/{holiday}"))["stage"] == "active"
        assert asked, "changing the stage asks for confirmation first"
        await shot("campaign-stage-changed")

        # --- workflows and their executions --------------------------------------------------------------
        await page.goto("/workflows")
        await shot("workflows")
        await page.locator("main table a").first.click()
        await page.wait_for_url("**/workflows/*")
        workflow_id = page.url.rsplit("/", 1)[-1].split("?")[0]
        await page.get_by_role("button", name="Run now").click()
        await page.wait_for_url(f"**/workflows/{workflow_id}*")
        executions = (await api(f"/v1/workflows/{workflow_id}/executions"))["items"]
        shown = page.locator("[data-testid=execution]")
        await expect(shown).to_have_count(len(executions))
        assert len(executions) >= 1
        assert await shown.first.get_attribute("data-id") == executions[0]["id"]
        await shot("workflow")

        # --- settings -------------------------------------------------------------------------------------
        for tab in ("users", "api-keys", "flags", "usage", "billing"):
            await page.goto(f"/settings/{tab}")
            assert page.url.endswith(f"/settings/{tab}")
            await expect(page.locator("h1")).to_be_visible()
            await shot(f"settings-{tab}")
        usage = await api("/v1/tenant/usage")
        assert usage  # the usage tab's figures are checked against the API in test_settings_pages

        # --- every page on a phone-sized screen: nothing wider than the screen, the menu behind a button ----
        for path, name in visited:
            await _phone_shot(browser, context, live_server, path, name)

        # --- keyboard: the first Tab reaches the skip link, which leads to the content --------------------
        await page.goto("/")
        await page.keyboard.press("Tab")
        await expect(page.locator("a.skip")).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(page.locator("main")).to_be_focused()

        # --- sign out -------------------------------------------------------------------------------------
        await page.get_by_role("button", name="Sign out").click()
        await page.wait_for_url("**/login")
        await page.goto("/")
        assert "/login" in page.url
        await context.close()

        # --- a viewer sees the same numbers but no edit controls --------------------------------------------
        viewer, viewer_page = await _sign_in(browser, live_server, *logins["viewer"])
        await viewer_page.goto(f"/campaigns/{campaign_id}")
        await expect(viewer_page.locator(".model")).to_have_count(len(MODELS))
        assert await viewer_page.locator("#stage-form").count() == 0
        await viewer_page.goto("/settings/api-keys")
        assert await viewer_page.locator("form[action='/settings/api-keys']").count() == 0
        await shoot(viewer_page, "campaign-as-viewer")
        await viewer.close()
