"""Property tests of the credit SQL: hand-made (conversion, touch) pairs go through the very SQL the
routes run, and every model's credits are checked against the rules and the reference code."""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from castmetrics.attribution import engine, reference
from castmetrics.attribution.schemas import MODELS
from castmetrics.db import urls

BASE = datetime(2026, 11, 1, tzinfo=UTC)
HALF_LIFE = timedelta(days=7)
LOOKBACK = timedelta(days=30)
CAMPAIGN = uuid.UUID(int=1)
GROUP = uuid.UUID(int=2)

PAIRS = """
    pair_src AS (
        SELECT * FROM unnest(
            CAST(%(conv_ids)s AS uuid[]), CAST(%(conv_ats)s AS timestamptz[]), CAST(%(sinces)s AS timestamptz[]),
            CAST(%(revenues)s AS float8[]),
            CAST(%(currencies)s AS text[]), CAST(%(touch_ids)s AS uuid[]), CAST(%(touch_ats)s AS timestamptz[]),
            CAST(%(campaigns)s AS uuid[]), CAST(%(episodes)s AS uuid[])
        ) AS p(conv_id, conv_at, since, revenue, currency, touch_id, touch_at, campaign_id, episode_id)
    )"""
SELECT = f"SELECT conv_id, touch_id, {', '.join(MODELS)} FROM credited ORDER BY conv_id, r"

# A touch: seconds before its conversion, drawn from few values so ties in time are common.
ages = st.sampled_from([0, 60, 3_600, 86_400, 3 * 86_400, 7 * 86_400, 20 * 86_400, 29 * 86_400])
conversion = st.tuples(
    st.lists(st.tuples(ages, st.uuids()), min_size=1, max_size=8, unique_by=lambda t: t[1]),
    st.integers(0, 30 * 86_400),
    st.floats(0, 10_000, allow_nan=False),
)
batches = st.lists(conversion, min_size=1, max_size=4)

Credits = dict[uuid.UUID, dict[uuid.UUID, dict[str, float]]]


@pytest.fixture(scope="module")
def conn(postgres_admin_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(urls.libpq_url(postgres_admin_url), autocommit=True) as connection:
        yield connection


def _pairs(
    batch: list[tuple[list[tuple[int, uuid.UUID]], int, float]],
) -> tuple[dict[str, list[object]], list[tuple[reference.Conversion, list[reference.Touch]]]]:
    params: dict[str, list[object]] = defaultdict(list)
    cases = []
    for n, (touches, offset, revenue) in enumerate(batch):
        conv_id, at = uuid.UUID(int=1000 + n), BASE + timedelta(seconds=offset)
        made = [reference.Touch(tid, at - timedelta(seconds=age), "l", GROUP, CAMPAIGN) for age, tid in touches]
        cases.append((reference.Conversion(conv_id, at, "l", GROUP, revenue, LOOKBACK), made))
        for touch in made:
            for key, value in (
                ("conv_ids", conv_id), ("conv_ats", at), ("sinces", at - LOOKBACK), ("revenues", revenue),
                ("currencies", "USD"), ("touch_ids", touch.id), ("touch_ats", touch.at), ("campaigns", CAMPAIGN),
                ("episodes", None),
            ):  # fmt: skip
                params[key].append(value)
    return params, cases


def credit_sql(conn: psycopg.Connection[tuple[object, ...]], params: dict[str, list[object]]) -> Credits:
    sql = engine.statement(SELECT, pairs=PAIRS)
    found: Credits = defaultdict(dict)
    for row in conn.execute(sql, {**params, "half_life_seconds": HALF_LIFE.total_seconds()}):
        conv_id, touch_id, *values = row
        assert isinstance(conv_id, uuid.UUID) and isinstance(touch_id, uuid.UUID)
        found[conv_id][touch_id] = {m: float(v) for m, v in zip(MODELS, values, strict=True)}  # type: ignore[arg-type]
    return found


# derandomize: the same 150 examples every run (a seed derived from the test), so a failure reproduces
@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=batches)
def test_credits_follow_the_rules_and_the_reference(conn: psycopg.Connection[tuple[object, ...]], batch) -> None:  # type: ignore[no-untyped-def]
    params, cases = _pairs(batch)
    found = credit_sql(conn, params)
    for conv, touches in cases:
        credits = found[conv.id]
        ordered = reference.candidates(conv, touches)
        assert [t.id for t in ordered] == list(credits)  # ordered by time, then by event id
        for model in MODELS:
            # Credits for one conversion sum to 1 under every model.
            assert math.isclose(sum(c[model] for c in credits.values()), 1.0, abs_tol=1e-9), model
            # The same credits as the one-conversion-at-a-time reference, to 1e-9.
            expected = reference.credits(model, ordered, conv.at, HALF_LIFE)
            assert all(
                math.isclose(credits[t.id][model], e, rel_tol=1e-9, abs_tol=1e-12)
                for t, e in zip(ordered, expected, strict=True)
            ), model
        shares = [credits[t.id] for t in ordered]
        if len(ordered) == 1:  # first and last touch agree when there is one touch
            assert shares[0]["first_touch"] == shares[0]["last_touch"] == 1.0
        if len(ordered) == 2:  # linear equals position-based for two touches
            assert [s["linear"] for s in shares] == [s["position_based"] for s in shares] == [0.5, 0.5]
        # Time-decay weights fall with age: an older touch never gets more than a newer one,
        # touches at the same time get the same, and a strictly older one strictly less.
        for older, newer in zip(ordered, ordered[1:], strict=False):
            a, b = credits[older.id]["time_decay"], credits[newer.id]["time_decay"]
            if older.at == newer.at:
                assert math.isclose(a, b, rel_tol=1e-12)
            else:
                assert a < b


def test_hand_computed_credits(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Four touches at 14, 7, 7 and 0 days before the conversion; the two at 7 days tie in time
    and are ordered by id."""
    ids = [uuid.UUID(int=n) for n in (40, 30, 20, 10)]  # the tie: 30 < 20 is false, so 20 comes first
    touches = [(14 * 86_400, ids[0]), (7 * 86_400, ids[1]), (7 * 86_400, ids[2]), (0, ids[3])]
    params, _ = _pairs([(touches, 0, 100.0)])
    found = credit_sql(conn, params)[uuid.UUID(int=1000)]
    assert list(found) == [ids[0], ids[2], ids[1], ids[3]]
    first, mid1, mid2, last = (found[i] for i in (ids[0], ids[2], ids[1], ids[3]))
    assert (first["first_touch"], mid1["first_touch"], mid2["first_touch"], last["first_touch"]) == (1, 0, 0, 0)
    assert (first["last_touch"], mid1["last_touch"], mid2["last_touch"], last["last_touch"]) == (0, 0, 0, 1)
    assert all(c["linear"] == 0.25 for c in found.values())
    # Weights 2^-2, 2^-1, 2^-1, 1 (ages 14, 7, 7, 0 days with a 7-day half-life), total 2.25.
    assert math.isclose(first["time_decay"], 0.25 / 2.25)
    assert math.isclose(mid1["time_decay"], 0.5 / 2.25) and math.isclose(mid2["time_decay"], 0.5 / 2.25)
    assert math.isclose(last["time_decay"], 1 / 2.25)
    # 40 % first, 40 % last, the 20 % shared by the two in the middle.
    assert [first["position_based"], mid1["position_based"], mid2["position_based"], last["position_based"]] == [
        0.4, 0.1, 0.1, 0.4,
    ]  # fmt: skip
