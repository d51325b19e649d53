"""The sponsor report route: its JSON equals the pacing and compare routes' answers, its CSV equals its
JSON, its PDF holds the campaign and the five models; formats by parameter or by Accept; validation."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import httpx
import pypdf

from tests.factories.reports import CAMPAIGN_NAME, MODEL_LABELS, SPONSOR_NAME, Deal

# Pacing numbers that do not move between two requests a moment apart (elapsed, expected, projected,
# status and a flat fee's spend are continuous in time).
STEADY = ("booking_id", "podcast_id", "episode_id", "placement", "pricing_model", "currency", "flight_start",
          "flight_end", "phase", "booked", "delivered")  # fmt: skip
TOTALS = ("conversions", "revenue", "spend", "roi", "roas", "cpa", "touchpoints", "unattributed_conversions")


async def _report(client: httpx.AsyncClient, deal: Deal, role: str = "viewer", **params: Any) -> httpx.Response:
    return await client.get(f"/v1/campaigns/{deal.campaign_id}/report", params=params, headers=deal.team.auth(role))


def blocks(text: str) -> list[list[list[str]]]:
    """The CSV's blocks: runs of rows between empty rows, each opening with its header row."""
    found: list[list[list[str]]] = [[]]
    for row in csv.reader(io.StringIO(text)):
        if not row:
            found.append([])
        else:
            found[-1].append(row)
    return found


async def test_json_report_equals_the_pacing_and_compare_answers(client: httpx.AsyncClient, deal: Deal) -> None:
    # given a campaign with deliveries and conversions
    viewer = deal.team.auth("viewer")
    # when the report is asked for as JSON, and the pacing and compare routes too
    response = await _report(client, deal)
    pacing = (await client.get(f"/v1/campaigns/{deal.campaign_id}/pacing", headers=viewer)).json()
    compared = await client.get("/v1/attribution/compare", params={"campaign_id": deal.campaign_id}, headers=viewer)
    # then the report's numbers are theirs
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "private, no-store"
    report = response.json()
    assert report["campaign"]["name"] == CAMPAIGN_NAME and report["campaign"]["stage"] == "active"
    assert report["sponsor"]["name"] == SPONSOR_NAME
    assert report["model"] == "last_touch" and report["lookback_days"] == 30 and report["currency"] == "USD"
    assert report["flight_start"] == pacing["bookings"][0]["flight_start"]

    assert [{k: b[k] for k in STEADY} for b in report["pacing"]["bookings"]] == [
        {k: b[k] for k in STEADY} for b in pacing["bookings"]
    ]
    for field in ("booked", "delivered", "currency", "mixed_currencies"):
        assert report["pacing"][field] == pacing[field], field
    for field in ("expected_to_date", "projected"):
        assert abs(report["pacing"][field] - pacing[field]) <= 1, field
    assert math.isclose(report["pacing"]["spend_to_date"], pacing["spend_to_date"], rel_tol=1e-3)
    assert pacing["delivered"] > 0

    models = compared.json()["models"]
    assert [{k: m[k] for k in ("model", *TOTALS)} for m in models] == report["comparison"]
    assert report["attribution"] == next(m for m in models if m["model"] == "last_touch")
    assert report["attribution"]["conversions"] == 2 and report["attribution"]["revenue"] == 140
    assert report["attribution"]["unattributed_conversions"] == 1 and report["attribution"]["spend"] > 0
    assert report["attribution"]["podcasts"][0]["name"] == "Measured"

    # and the daily table: delivery summed over the bookings, even delivery, the model's days
    days = report["days"]
    assert days[0]["day"] == report["flight_start"] and days[-1]["day"] == report["flight_end"]
    assert sum(d["delivered"] for d in days) == pacing["delivered"]
    assert math.isclose(sum(d["expected"] for d in days), pacing["booked"])
    by_day = {d["day"]: d for d in report["attribution"]["days"]}
    for day in days:
        credited = by_day.get(day["day"], {"conversions": 0.0, "revenue": 0.0, "spend": 0.0})
        assert (day["conversions"], day["revenue"], day["spend"]) == (
            credited["conversions"], credited["revenue"], credited["spend"],
        )  # fmt: skip
    assert math.isclose(sum(d["conversions"] for d in days), 2)


async def test_model_lookback_and_range_are_passed_on(client: httpx.AsyncClient, deal: Deal) -> None:
    viewer = deal.team.auth("viewer")
    params = {"lookback_days": 2, "from": deal.today.isoformat(), "to": deal.today.isoformat()}
    report = (await _report(client, deal, model="linear", **params)).json()
    alone = await client.get(
        f"/v1/campaigns/{deal.campaign_id}/attribution", params={"model": "linear", **params}, headers=viewer
    )
    assert report["model"] == "linear" and report["lookback_days"] == 2
    assert report["from"] == report["to"] == deal.today.isoformat()
    assert report["attribution"] == alone.json()
    assert [d["day"] for d in report["days"]] == [deal.today.isoformat()]


async def test_csv_parses_and_its_totals_equal_the_json(client: httpx.AsyncClient, deal: Deal) -> None:
    report = (await _report(client, deal)).json()
    by_param = await _report(client, deal, format="csv")
    by_accept = await client.get(
        f"/v1/campaigns/{deal.campaign_id}/report", headers={**deal.team.auth("viewer"), "Accept": "text/csv"}
    )
    for response in (by_param, by_accept):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        assert response.headers["content-disposition"].startswith('attachment; filename="castmetrics-report-cafe-')
        assert response.headers["content-disposition"].endswith('.csv"')

    facts, days, models, bookings, podcasts = blocks(by_param.text)
    assert facts[0] == ["field", "value"]
    values = dict(facts[1:])
    assert values["campaign"] == CAMPAIGN_NAME and values["sponsor"] == SPONSOR_NAME
    assert values["model"] == "last_touch" and values["currency"] == "USD"
    assert int(values["booked"]) == report["pacing"]["booked"]
    assert int(values["delivered"]) == report["pacing"]["delivered"]

    assert days[0] == ["day", "delivered", "expected", "conversions", "revenue", "spend"]
    assert [row[0] for row in days[1:]] == [d["day"] for d in report["days"]]
    assert sum(int(row[1]) for row in days[1:]) == sum(d["delivered"] for d in report["days"])
    assert math.isclose(sum(float(row[3]) for row in days[1:]), sum(d["conversions"] for d in report["days"]))
    assert math.isclose(sum(float(row[5]) for row in days[1:]), sum(d["spend"] for d in report["days"]))

    assert models[0][:7] == ["model", "conversions", "revenue", "spend", "roi", "roas", "cpa"]
    for row, totals in zip(models[1:], report["comparison"], strict=True):
        assert row[0] == totals["model"]
        for cell, field in zip(row[1:7], ("conversions", "revenue", "spend", "roi", "roas", "cpa"), strict=True):
            assert (None if cell == "" else float(cell)) == totals[field], field

    assert bookings[0][0] == "booking_id" and len(bookings) == 1 + len(report["pacing"]["bookings"])
    assert {row[0] for row in bookings[1:]} == {b["booking_id"] for b in report["pacing"]["bookings"]}
    assert podcasts[0] == ["podcast_id", "podcast", "conversions", "revenue"]
    assert podcasts[1][1] == "Measured" and float(podcasts[1][2]) == report["attribution"]["podcasts"][0]["conversions"]


async def test_pdf_has_the_campaign_the_chart_and_the_models(client: httpx.AsyncClient, deal: Deal) -> None:
    response = await client.get(
        f"/v1/campaigns/{deal.campaign_id}/report", headers={**deal.team.auth("viewer"), "Accept": "application/pdf"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"].endswith('.pdf"')
    assert response.content.startswith(b"%PDF")
    reader = pypdf.PdfReader(io.BytesIO(response.content))
    text = "\n".join(page.extract_text() for page in reader.pages)
    # the coffee cup is not in the core fonts: it becomes "?", the rest stays
    assert "Café Launch — Spring ? 2026" in text
    assert SPONSOR_NAME in text
    for label in MODEL_LABELS:
        assert label in text, label
    for heading in ("Impressions per day", "Day (UTC)", "Expected (even delivery)", "Pacing by booking", "Measured"):
        assert heading in text, heading
    assert reader.metadata is not None and reader.metadata.title == "Sponsor report: Café Launch — Spring ? 2026"


async def test_format_and_range_validation(client: httpx.AsyncClient, deal: Deal) -> None:
    unknown = await _report(client, deal, format="xlsx")
    assert unknown.status_code == 422
    assert unknown.headers["content-type"] == "application/problem+json"
    assert unknown.json()["errors"][0]["loc"] == ["query", "format"]
    backwards = await _report(client, deal, **{"from": "2026-11-10", "to": "2026-11-01"})
    assert backwards.status_code == 422 and backwards.json()["type"].endswith("/invalid")
    assert (await _report(client, deal, lookback_days=0)).status_code == 422
    assert (await _report(client, deal, model="u_shaped")).status_code == 422
    # an explicit format wins over Accept; an Accept of nothing we make is JSON
    explicit = await client.get(
        f"/v1/campaigns/{deal.campaign_id}/report",
        params={"format": "json"},
        headers={**deal.team.auth("viewer"), "Accept": "application/pdf"},
    )
    assert explicit.headers["content-type"].startswith("application/json")
    fallback = await client.get(
        f"/v1/campaigns/{deal.campaign_id}/report", headers={**deal.team.auth("viewer"), "Accept": "image/png"}
    )
    assert fallback.status_code == 200 and fallback.headers["content-type"].startswith("application/json")


async def test_report_needs_attribution_read_and_the_tenants_campaign(
    client: httpx.AsyncClient, deal: Deal, make_team
) -> None:  # type: ignore[no-untyped-def]
    assert (await client.get(f"/v1/campaigns/{deal.campaign_id}/report")).status_code == 401
    other = await make_team("pro")
    foreign = await client.get(f"/v1/campaigns/{deal.campaign_id}/report", headers=other.auth("owner"))
    assert foreign.status_code == 404
    assert (await _report(client, deal, role="sales")).status_code == 200
