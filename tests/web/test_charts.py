"""Server-side SVG charts: well-formed, scaled, escaped, with gaps and empty states."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest

from castmetrics.web.charts import Series, bar_chart, line_chart, nice_ticks, number

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # raises on anything that is not well-formed XML


@pytest.mark.parametrize(
    ("high", "expected"),
    [(10, [0, 2.5, 5, 7.5, 10]), (97, [0, 25, 50, 75, 100]), (1234, [0, 500, 1000, 1500]), (0.3, [0, 0.1, 0.2, 0.3])],
)
def test_nice_ticks_start_at_zero_and_cover_the_highest(high: float, expected: list[float]) -> None:
    ticks = nice_ticks(high)
    assert ticks == pytest.approx(expected)
    assert ticks[-1] >= high


def test_nice_ticks_of_nothing() -> None:
    assert nice_ticks(0) == [0.0, 1.0] and nice_ticks(float("nan")) == [0.0, 1.0]


def test_number_labels() -> None:
    assert [number(v) for v in (0, 0.25, 999, 1200, 3_400_000, 2e9)] == ["0", "0.25", "999", "1.2k", "3.4M", "2G"]


def test_a_line_chart_scales_points_and_breaks_at_gaps() -> None:
    start = date(2026, 11, 1)
    points = [(start + timedelta(days=n), v) for n, v in enumerate([10.0, 20.0, None, 40.0, 0.0])]
    root = parse(line_chart([Series("Downloads", points)], title="Downloads", width=400, height=200))
    assert root.get("aria-label") == "Downloads" and root.find(f"{SVG}title").text == "Downloads"
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2  # the gap splits the line in two
    first = [tuple(map(float, p.split(","))) for p in lines[0].get("points").split()]
    second = [tuple(map(float, p.split(","))) for p in lines[1].get("points").split()]
    # x grows with the date; y is 0 at the bottom and the highest tick (40) at the top
    assert first[0][0] < first[1][0] < second[0][0] < second[1][0]
    assert first[0][1] > first[1][1] > second[0][1] and second[1][1] > first[0][1]
    labels = [t.text for t in root.findall(f"{SVG}text")]
    assert "Nov 01" in labels and "Nov 05" in labels and "40" in labels


def test_several_series_get_a_legend_and_text_is_escaped() -> None:
    hostile = '<script>alert("x")</script> & co'
    svg = line_chart(
        [Series(hostile, [(1, 1.0), (2, 2.0)]), Series("B", [(1, 2.0), (2, 1.0)])], title=f"Title {hostile}"
    )
    root = parse(svg)
    assert "<script>" not in svg
    assert hostile in [t.text for t in root.findall(f"{SVG}text")]  # shown as text, not markup
    assert len(root.findall(f"{SVG}rect")) == 2  # one legend swatch per series


def test_empty_charts_say_so() -> None:
    for svg in (line_chart([], title="t"), line_chart([Series("a", [(1, None)])], title="t"), bar_chart([], title="t")):
        assert [t.text for t in parse(svg).findall(f"{SVG}text")] == ["No data"]


def test_one_point_is_a_dot() -> None:
    root = parse(line_chart([Series("a", [(date(2026, 1, 1), 5.0)])], title="t"))
    assert len(root.findall(f"{SVG}circle")) == 1 and not root.findall(f"{SVG}polyline")


def test_bars_are_proportional_and_long_labels_shortened() -> None:
    root = parse(bar_chart([("Apple Podcasts", 300), ("Spotify", 150), ("A very long application name indeed", -5)],
                           title="Apps", width=600))  # fmt: skip
    widths = [float(r.get("width")) for r in root.findall(f"{SVG}rect")]
    assert widths[0] == pytest.approx(2 * widths[1]) and widths[2] == 0
    assert "A very long application…" in [t.text for t in root.findall(f"{SVG}text")]
