"""Rendering without a database: text the core fonts cannot show, empty and one-day reports, long
tables across pages, CSV cells a spreadsheet would run as formulas, the Accept negotiation."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta

import pypdf
import pytest

from castmetrics.attribution.schemas import MODELS, AttributionOut, PodcastReturns
from castmetrics.reports import render
from castmetrics.reports.router import negotiate
from castmetrics.reports.schemas import (
    ModelTotals,
    ReportBooking,
    ReportCampaign,
    ReportDay,
    ReportFormat,
    ReportOut,
    ReportSponsor,
)
from castmetrics.sponsorship.schemas import BookingPacing, CampaignPacingOut

START = date(2026, 11, 1)


def make_report(*, name: str = "Campaign", days: int = 30, bookings: int = 2, podcasts: int = 1) -> ReportOut:
    campaign_id = uuid.uuid4()
    booked = [
        BookingPacing(
            booking_id=uuid.uuid4(), podcast_id=uuid.uuid4(), episode_id=None, placement="mid_roll",
            pricing_model="cpm", currency="USD", flight_start=START, flight_end=START + timedelta(days=29),
            phase="in_flight", elapsed=0.5, booked=1000, delivered=400 + n, expected_to_date=500, projected=800,
            pace=0.8, status="behind", spend_to_date=10.0, spend_to_date_minor=1000,
        )
        for n in range(bookings)
    ]  # fmt: skip
    pacing = CampaignPacingOut(
        campaign_id=campaign_id, as_of=datetime(2026, 11, 16, tzinfo=UTC), currency="USD", mixed_currencies=False,
        booked=1000 * bookings, delivered=400 * bookings, expected_to_date=500 * bookings,
        projected=800 * bookings, pace=0.8, status="behind", spend_to_date=10.0 * bookings,
        spend_to_date_minor=1000 * bookings, bookings=booked,
    )  # fmt: skip
    attribution = AttributionOut(
        model="last_touch", campaign_id=campaign_id, currency="USD", lookback_days=30, half_life_days=7,
        touchpoints=3, unattributed_conversions=1, other_currency_conversions=0, conversions=2.0, revenue=50.0,
        spend=20.0, roi=1.5, roas=2.5, cpa=10.0,
        podcasts=[PodcastReturns(podcast_id=uuid.uuid4(), name=f"Show {n}", conversions=1, revenue=2)
                  for n in range(podcasts)],
    )  # fmt: skip
    return ReportOut(
        as_of=pacing.as_of,
        campaign=ReportCampaign(id=campaign_id, name=name, stage="active", description=None, start_date=None,
                                end_date=None, lookback_days=30),
        sponsor=ReportSponsor(id=uuid.uuid4(), name="Sponsor", website_url=None),
        model="last_touch", lookback_days=30, currency="USD", flight_start=START,
        flight_end=START + timedelta(days=29), pacing=pacing,
        bookings=[ReportBooking(booking_id=b.booking_id, podcast_id=b.podcast_id, podcast_name=f"Podcast {n}",
                                episode_id=None, episode_title=None) for n, b in enumerate(booked)],
        attribution=attribution,
        comparison=[ModelTotals(model=m, conversions=2.0, revenue=50.0, spend=0.0, roi=None, roas=None, cpa=None,
                                touchpoints=3, unattributed_conversions=1) for m in MODELS],
        days=[ReportDay(day=START + timedelta(days=n), delivered=n * 3, expected=33.3, conversions=n % 3,
                        revenue=1.5, spend=0.25) for n in range(days)],
    )  # fmt: skip


def pdf_text(body: bytes) -> tuple[int, str]:
    reader = pypdf.PdfReader(io.BytesIO(body))
    return len(reader.pages), "\n".join(page.extract_text() for page in reader.pages)


def test_pdf_safe_keeps_what_the_core_fonts_show_and_replaces_the_rest() -> None:
    assert render.pdf_safe("Café — “Zürich” €5 · naïve") == "Café — “Zürich” €5 · naïve"
    assert render.pdf_safe("Kraków Łódź Őrség") == "Kraków ?ódz Orség"
    assert render.pdf_safe("東京 🎙\u200b") == "?? ??"
    assert render.pdf_safe(None) == ""


@pytest.mark.parametrize("days", [0, 1, 2, 1000])
def test_pdf_renders_any_number_of_days(days: int) -> None:
    pages, text = pdf_text(render.report_pdf(make_report(name="Ünïcødé 東京 campaign 🚀", days=days)))
    assert pages >= 1
    assert "Ünïcødé ?? campaign ?" in text
    assert ("No bookings or conversions yet." in text) == (days == 0)
    assert ("Impressions per day" in text) == (days > 0)


def test_long_tables_run_across_pages_with_their_header_repeated() -> None:
    pages, text = pdf_text(render.report_pdf(make_report(bookings=120, podcasts=80)))
    assert pages >= 4
    assert text.count("Podcast / episode") >= 3  # the pacing table's header on each of its pages
    assert "Podcast 119" in text and "Show 79" in text
    assert "Page 1 of" in text


def test_nulls_are_dashes_in_the_pdf_and_empty_in_the_csv() -> None:
    report = make_report()
    _, text = pdf_text(render.report_pdf(report))
    assert "First touch 2.00 50.00 0.00 — — —" in text
    rows = list(csv.reader(io.StringIO(render.report_csv(report).decode())))
    first_touch = next(row for row in rows if row and row[0] == "first_touch")
    assert first_touch[4:7] == ["", "", ""]


def test_csv_defuses_formula_like_names() -> None:
    rows = list(csv.reader(io.StringIO(render.report_csv(make_report(name="=HYPERLINK(1)")).decode())))
    assert ["campaign", "'=HYPERLINK(1)"] in rows
    assert ["stage", "active"] in rows


@pytest.mark.parametrize(
    ("given", "accept", "chosen"),
    [
        (None, "", "json"),
        (None, "*/*", "json"),
        (None, "text/csv", "csv"),
        (None, "application/pdf, application/json", "pdf"),
        (None, "application/json;q=0.5, application/pdf;q=0.9", "pdf"),
        (None, "text/csv;q=0, application/json", "json"),
        (None, "TEXT/CSV; charset=utf-8", "csv"),
        (None, "image/png", "json"),
        ("csv", "application/pdf", "csv"),
    ],
)
def test_accept_negotiation(given: ReportFormat | None, accept: str, chosen: str) -> None:
    assert negotiate(given, accept) == chosen
