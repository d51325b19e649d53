"""Rendering a sponsor report as CSV and as PDF (fpdf2): pure functions from ``ReportOut`` to bytes."""

from __future__ import annotations

import csv
import io
import math
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace

from castmetrics.attribution.schemas import Model
from castmetrics.http.spreadsheet import cell, text_cell
from castmetrics.money import exponent
from castmetrics.reports.schemas import ReportOut

MODEL_LABELS: dict[Model, str] = {
    "first_touch": "First touch",
    "last_touch": "Last touch",
    "linear": "Linear",
    "time_decay": "Time decay",
    "position_based": "Position based",
}
NULL = "\u2014"  # an em dash: a ratio whose divisor is 0
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# --- CSV -----------------------------------------------------------------------------------------

DAY_HEADER = ("day", "delivered", "expected", "conversions", "revenue", "spend")
MODEL_HEADER = (
    "model", "conversions", "revenue", "spend", "roi", "roas", "cpa", "touchpoints", "unattributed_conversions",
)  # fmt: skip
BOOKING_HEADER = (
    "booking_id", "podcast", "episode", "placement", "pricing_model", "currency", "flight_start", "flight_end",
    "phase", "booked", "delivered", "expected_to_date", "projected", "pace", "status", "spend_to_date",
)  # fmt: skip
PODCAST_HEADER = ("podcast_id", "podcast", "conversions", "revenue")


def _cell(value: Any) -> Any:
    return repr(value) if isinstance(value, float) else cell(value)


def report_csv(report: ReportOut) -> bytes:
    """The report as CSV blocks separated by one empty row, each opening with its header row:
    ``field,value`` (the report's facts), then ``day,…`` (the daily table), ``model,…`` (the five
    models' totals), ``booking_id,…`` (pacing per booking), ``podcast_id,…`` (the chosen model by
    podcast). Numbers are plain (dot decimals, no grouping), nulls are empty, money is in major
    units of ``currency``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def block(header: Sequence[str], rows: Iterable[Sequence[Any]], *, first: bool = False) -> None:
        if not first:
            writer.writerow([])
        writer.writerow(header)
        writer.writerows([_cell(v) for v in row] for row in rows)

    pacing = report.pacing
    facts: list[tuple[str, Any]] = [
        ("campaign", text_cell(report.campaign.name)),
        ("campaign_id", report.campaign.id),
        ("stage", report.campaign.stage),
        ("sponsor", text_cell(report.sponsor.name) if report.sponsor else None),
        ("flight_start", report.flight_start),
        ("flight_end", report.flight_end),
        ("as_of", report.as_of),
        ("model", report.model),
        ("lookback_days", report.lookback_days),
        ("from", report.from_),
        ("to", report.to),
        ("currency", report.currency),
        ("booked", pacing.booked),
        ("delivered", pacing.delivered),
        ("expected_to_date", pacing.expected_to_date),
        ("projected", pacing.projected),
        ("pace", pacing.pace),
        ("pacing_status", pacing.status),
        ("spend_to_date", pacing.spend_to_date),
    ]
    block(("field", "value"), facts, first=True)
    block(DAY_HEADER, ((d.day, d.delivered, d.expected, d.conversions, d.revenue, d.spend) for d in report.days))
    block(
        MODEL_HEADER,
        (
            (m.model, m.conversions, m.revenue, m.spend, m.roi, m.roas, m.cpa, m.touchpoints,
             m.unattributed_conversions)
            for m in report.comparison
        ),
    )  # fmt: skip
    names = {b.booking_id: b for b in report.bookings}
    block(
        BOOKING_HEADER,
        (
            (b.booking_id, text_cell(names[b.booking_id].podcast_name) if b.booking_id in names else None,
             text_cell(names[b.booking_id].episode_title) if b.booking_id in names else None, b.placement,
             b.pricing_model, b.currency, b.flight_start, b.flight_end, b.phase, b.booked, b.delivered,
             b.expected_to_date, b.projected, b.pace, b.status, b.spend_to_date)
            for b in pacing.bookings
        ),
    )  # fmt: skip
    block(
        PODCAST_HEADER,
        ((p.podcast_id, text_cell(p.name), p.conversions, p.revenue) for p in report.attribution.podcasts),
    )
    return buffer.getvalue().encode("utf-8")


# --- PDF -----------------------------------------------------------------------------------------

PAGE_MARGIN = 15.0
BAR_COLOR = (70, 120, 190)
LINE_COLOR = (220, 110, 40)
CONVERSION_COLOR = (60, 150, 90)
GRID_COLOR = (215, 215, 215)
ROW_SHADE = (245, 247, 250)
HEADING_STYLE = FontFace(emphasis="BOLD", fill_color=(230, 234, 240))
ENCODING = "windows-1252"  # the core fonts' WinAnsiEncoding: latin-1 plus dashes, quotes, euro


def pdf_safe(text: str | None) -> str:
    """``text`` in characters the core fonts can show: accents decomposed where the letter is not in
    WinAnsi (``ő`` → ``o``), anything else left unencodable becomes ``?``."""
    if not text:
        return ""
    out = []
    for char in text:
        try:
            char.encode(ENCODING)
            out.append(char)
            continue
        except UnicodeEncodeError:
            pass
        base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
        try:
            base.encode(ENCODING)
            out.append(base or "?")
        except UnicodeEncodeError:
            out.append("?")
    return "".join(out)


def _count(value: float | None) -> str:
    return NULL if value is None else f"{value:,.0f}"


def _credit(value: float | None) -> str:
    return NULL if value is None else f"{value:,.2f}"


def _ratio(value: float | None) -> str:
    return NULL if value is None else f"{value:,.2f}"


def _percent(value: float | None) -> str:
    return NULL if value is None else f"{value:.0%}"


def _money(value: float | None, currency: str) -> str:
    return NULL if value is None else f"{value:,.{exponent(currency)}f}"


def _day(day: date | None) -> str:
    return NULL if day is None else f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def _short_day(day: date) -> str:
    return f"{day.day} {MONTHS[day.month - 1]}"


def _compact(value: float) -> str:
    """An axis label: 950, 1.2k, 3.4M."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def _nice_ceiling(value: float) -> float:
    """The axis top: ``value`` rounded up to 1, 2, 2.5 or 5 times a power of ten (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)


class _ReportPDF(FPDF):
    def __init__(self, footer_text: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.footer_text = footer_text
        self.core_fonts_encoding = ENCODING

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font("Helvetica", size=7)
        self.set_text_color(120, 120, 120)
        self.cell(0, 4, self.footer_text, align="L")
        self.set_x(self.l_margin)
        self.cell(0, 4, f"Page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(0, 0, 0)


def _heading(pdf: FPDF, text: str) -> None:
    if pdf.will_page_break(20):
        pdf.add_page()
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 7, pdf_safe(text), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=8)


def _chart(
    pdf: FPDF,
    days: Sequence[date],
    bars: Sequence[float],
    line: Sequence[float] | None,
    *,
    title: str,
    y_label: str,
    color: tuple[int, int, int],
    legend: Sequence[tuple[str, str, tuple[int, int, int]]],
    height: float,
) -> None:
    """One panel: ``bars`` per day, optionally ``line`` over them, with a y axis of five labelled
    ticks, day labels under the x axis, axis titles and a legend."""
    if pdf.will_page_break(height + 22):
        pdf.add_page()
    pdf.set_font("Helvetica", "B", 9)
    pdf.cell(0, 5, pdf_safe(title), new_x="LMARGIN", new_y="NEXT")
    left = pdf.l_margin + 16  # room for the tick labels and the axis title
    top = pdf.get_y() + 2
    width = pdf.epw - 16
    bottom = top + height
    top_value = _nice_ceiling(max([*bars, *(line or ()), 0.0]))

    pdf.set_font("Helvetica", size=6.5)
    pdf.set_line_width(0.1)
    for k in range(5):  # gridlines and y tick labels
        value = top_value * k / 4
        y = bottom - height * k / 4
        pdf.set_draw_color(*GRID_COLOR)
        pdf.line(left, y, left + width, y)
        label = _compact(value)
        pdf.text(left - 1.5 - pdf.get_string_width(label), y + 1, label)
    with pdf.rotation(90, pdf.l_margin + 3, top + height / 2):
        label = pdf_safe(y_label)
        pdf.text(pdf.l_margin + 3 - pdf.get_string_width(label) / 2, top + height / 2, label)

    count = len(days)
    slot = width / max(count, 1)
    pdf.set_fill_color(*color)
    for n, value in enumerate(bars):
        if value > 0:
            bar = height * value / top_value
            pdf.rect(left + n * slot + slot * 0.1, bottom - bar, slot * 0.8, bar, style="F")
    if line:
        pdf.set_draw_color(*LINE_COLOR)
        pdf.set_line_width(0.5)
        points = [(left + (n + 0.5) * slot, bottom - height * v / top_value) for n, v in enumerate(line)]
        if len(points) == 1:
            x, y = points[0]
            points = [(x - slot * 0.4, y), (x + slot * 0.4, y)]
        pdf.polyline(points)

    pdf.set_draw_color(0, 0, 0)  # the axes over everything
    pdf.set_line_width(0.3)
    pdf.line(left, top, left, bottom)
    pdf.line(left, bottom, left + width, bottom)
    pdf.set_line_width(0.2)
    labels = min(count, 7)
    for k in range(labels):  # evenly spaced day labels, first and last included
        n = round(k * (count - 1) / (labels - 1)) if labels > 1 else 0
        x = left + (n + 0.5) * slot
        pdf.line(x, bottom, x, bottom + 1)
        label = _short_day(days[n])
        pdf.text(x - pdf.get_string_width(label) / 2, bottom + 4, label)
    axis = "Day (UTC)"
    pdf.text(left + width / 2 - pdf.get_string_width(axis) / 2, bottom + 8, axis)

    x = left
    for name, kind, swatch in legend:  # legend, right under the axis title
        y = bottom + 11
        if kind == "bar":
            pdf.set_fill_color(*swatch)
            pdf.rect(x, y - 2, 4, 2.5, style="F")
        else:
            pdf.set_draw_color(*swatch)
            pdf.set_line_width(0.5)
            pdf.line(x, y - 0.75, x + 4, y - 0.75)
        text = pdf_safe(name)
        pdf.text(x + 5, y, text)
        x += 5 + pdf.get_string_width(text) + 6
    pdf.set_draw_color(0, 0, 0)
    pdf.set_fill_color(255, 255, 255)
    pdf.set_line_width(0.2)
    pdf.set_y(bottom + 14)


def _table(pdf: FPDF, header: Sequence[str], rows: Iterable[Sequence[str]], widths: Sequence[float]) -> None:
    """A table over the page's width that breaks across pages, repeating its header row; the first
    column is left-aligned, the others (numbers) right-aligned."""
    pdf.set_font("Helvetica", size=7.5)
    pdf.set_fill_color(255, 255, 255)
    with pdf.table(
        col_widths=tuple(widths), headings_style=HEADING_STYLE, line_height=4.5, padding=1,
        text_align="RIGHT", first_row_as_headings=True, repeat_headings=1, cell_fill_color=ROW_SHADE,
        cell_fill_mode="ROWS",
    ) as table:  # fmt: skip
        heading = table.row()
        for k, name in enumerate(header):
            heading.cell(pdf_safe(name), align="LEFT" if k == 0 else "RIGHT")
        for values in rows:
            row = table.row()
            for k, value in enumerate(values):
                row.cell(pdf_safe(value), align="LEFT" if k == 0 else "RIGHT")


def _facts(pdf: FPDF, facts: Sequence[tuple[str, str]]) -> None:
    for label, value in facts:
        pdf.set_font("Helvetica", "B", 9)
        pdf.cell(32, 5, pdf_safe(label))
        pdf.set_font("Helvetica", size=9)
        pdf.multi_cell(0, 5, pdf_safe(value), new_x="LMARGIN", new_y="NEXT")


def report_pdf(report: ReportOut) -> bytes:
    """The report as an A4 PDF: title and facts, the delivery and conversion charts, pacing per
    booking, the five models side by side, and the chosen model by podcast and by episode."""
    currency = report.currency
    pacing = report.pacing
    spend_currency = pacing.currency or currency
    sponsor = report.sponsor.name if report.sponsor else "(no sponsor)"
    as_of = report.as_of.strftime("%Y-%m-%d %H:%M UTC")
    pdf = _ReportPDF(pdf_safe(f"{report.campaign.name} - sponsor report as of {as_of} - Castmetrics"))
    pdf.set_title(pdf_safe(f"Sponsor report: {report.campaign.name}"))
    pdf.set_author("Castmetrics")
    pdf.set_creator("Castmetrics")
    pdf.set_margins(PAGE_MARGIN, PAGE_MARGIN, PAGE_MARGIN)
    pdf.set_auto_page_break(True, margin=15)
    pdf.alias_nb_pages()
    pdf.add_page()

    pdf.set_font("Helvetica", "B", 18)
    pdf.multi_cell(0, 9, pdf_safe(f"Sponsor report: {report.campaign.name}"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    window = ""
    if report.from_ is not None or report.to is not None:
        window = f"; conversions {_day(report.from_)} to {_day(report.to)}"
    _facts(
        pdf,
        [
            ("Sponsor", sponsor),
            ("Campaign", f"{report.campaign.name} ({report.campaign.stage})"),
            ("Flight", f"{_day(report.flight_start)} to {_day(report.flight_end)}"),
            ("As of", as_of),
            ("Attribution", f"{MODEL_LABELS[report.model]}, {report.lookback_days}-day lookback{window}"),
            (
                "Delivery",
                f"{_count(pacing.delivered)} of {_count(pacing.booked)} impressions booked; "
                f"{_count(pacing.expected_to_date)} expected to date, {_count(pacing.projected)} projected "
                f"(pace {_percent(pacing.pace)}, {pacing.status.replace('_', ' ')})",
            ),
            ("Spend to date", f"{_money(pacing.spend_to_date, spend_currency)} {spend_currency}"),
        ],
    )

    _heading(pdf, "Delivery and conversions by day")
    if report.days:
        days = [d.day for d in report.days]
        _chart(
            pdf, days, [float(d.delivered) for d in report.days], [d.expected for d in report.days],
            title="Impressions per day", y_label="Impressions", color=BAR_COLOR, height=55,
            legend=[("Delivered", "bar", BAR_COLOR), ("Expected (even delivery)", "line", LINE_COLOR)],
        )  # fmt: skip
        _chart(
            pdf, days, [d.conversions for d in report.days], None,
            title=f"Conversions per day ({MODEL_LABELS[report.model]})", y_label="Conversions",
            color=CONVERSION_COLOR, height=35, legend=[("Conversions (credit)", "bar", CONVERSION_COLOR)],
        )  # fmt: skip
    else:
        pdf.set_font("Helvetica", "I", 9)
        pdf.cell(0, 6, "No bookings or conversions yet.", new_x="LMARGIN", new_y="NEXT")

    _heading(pdf, "Pacing by booking")
    names = {b.booking_id: b for b in report.bookings}

    def booking_label(booking_id: Any) -> str:
        named = names.get(booking_id)
        if named is None:
            return str(booking_id)[:8]
        return f"{named.podcast_name} / {named.episode_title}" if named.episode_title else named.podcast_name

    _table(
        pdf,
        ("Podcast / episode", "Placement", "Flight", "Booked", "Delivered", "Expected", "Projected", "Pace", "Status"),
        (
            (booking_label(b.booking_id), b.placement.replace("_", "-"),
             f"{_short_day(b.flight_start)} - {_day(b.flight_end)}", _count(b.booked), _count(b.delivered),
             _count(b.expected_to_date), _count(b.projected), _percent(b.pace), b.status.replace("_", " "))
            for b in pacing.bookings
        ),
        (3.2, 1.3, 2.3, 1.3, 1.3, 1.3, 1.3, 0.9, 1.3),
    )  # fmt: skip

    _heading(pdf, f"Attribution: the five models side by side ({currency}, {report.lookback_days}-day lookback)")
    _table(
        pdf,
        ("Model", "Conversions", "Revenue", "Spend", "ROI", "ROAS", "CPA"),
        (
            (MODEL_LABELS[m.model] + (" *" if m.model == report.model else ""), _credit(m.conversions),
             _money(m.revenue, currency), _money(m.spend, currency), _ratio(m.roi), _ratio(m.roas),
             _money(m.cpa, currency))
            for m in report.comparison
        ),
        (2.2, 1.4, 1.6, 1.6, 1, 1, 1.4),
    )  # fmt: skip
    pdf.set_font("Helvetica", "I", 7)
    pdf.multi_cell(
        0, 4, pdf_safe(f"* the report's model. {NULL}: not defined (no spend, or no conversions for CPA). "
                       "Conversions are fractional credit."),
        new_x="LMARGIN", new_y="NEXT",
    )  # fmt: skip

    attribution = report.attribution
    _heading(pdf, f"{MODEL_LABELS[report.model]}: conversions by podcast")
    if attribution.podcasts:
        _table(
            pdf,
            ("Podcast", "Conversions", "Revenue"),
            ((p.name, _credit(p.conversions), _money(p.revenue, currency)) for p in attribution.podcasts),
            (4, 1.5, 1.5),
        )
    else:
        pdf.set_font("Helvetica", "I", 9)
        pdf.cell(0, 6, "No attributed conversions.", new_x="LMARGIN", new_y="NEXT")
    if attribution.episodes:
        _heading(pdf, f"{MODEL_LABELS[report.model]}: top episodes")
        _table(
            pdf,
            ("Episode", "Conversions", "Revenue"),
            ((e.title, _credit(e.conversions), _money(e.revenue, currency)) for e in attribution.episodes),
            (4, 1.5, 1.5),
        )
    return bytes(pdf.output())
