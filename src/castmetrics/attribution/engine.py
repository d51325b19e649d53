"""The five attribution models, set-based in one SQL statement (DESIGN.md "Attribution").

Every conversion is paired with its candidate touchpoints: the same listener's ``impression`` and
``click`` events on campaigns of the conversion's campaign's sponsor (that campaign alone when it has
no sponsor), from ``conversion time − lookback`` to the conversion time, both ends included. Window
functions then number each conversion's touches by time, then by event id, and give each pair its
credit under every model at once:

* ``first_touch`` 1 to the first, ``last_touch`` 1 to the last, ``linear`` 1/n to each;
* ``time_decay`` ``2^(−age / half_life)`` normalised over the conversion's touches. The weights are
  taken relative to the start of the conversion's window (``2^((touch − start) / half_life)``), which
  normalises to the same shares without underflowing for old touches;
* ``position_based`` 40 % first, 40 % last, 20 % shared by the middle ones; 50/50 for two; 1 for one.

Credits of one conversion sum to 1 under every model. The statement's last step sums them (and
credit × revenue) by whatever the caller groups by: the touch's campaign, day, booking, episode.
"""

from __future__ import annotations

from typing import Final

from castmetrics.attribution.schemas import MODELS, Model

# Time-decay weights are taken relative to the start of the conversion's window, 2^((touch − start) /
# half_life): every exponent is between 0 and lookback / half_life, which options keep at most this
# (2^1000 ≈ 1e301 still fits a float8), so weights neither overflow nor underflow and their shares are
# those of 2^(−age / half_life).
MAX_EXPONENT = 1000.0

# The campaigns' attribution groups: a campaign's sponsor, or the campaign itself without one.
CAMPAIGN_GROUPS = """
    camp AS MATERIALIZED (
        SELECT c.id, coalesce(c.sponsor_id, c.id) AS grp, c.lookback_days
        FROM campaigns c
        WHERE c.tenant_id = %(tenant_id)s
    )"""

# Conversions with a conversion time in [start, end), of the chosen groups (all when groups is null).
CONVERSIONS = """
    conv AS MATERIALIZED (
        SELECT e.id, e.occurred_at AS at, e.listener_id, c.grp, e.campaign_id,
               CAST(e.attribution_data ->> 'revenue' AS float8) AS revenue,
               e.attribution_data ->> 'currency' AS currency,
               e.occurred_at - make_interval(days => coalesce(%(lookback_days)s, c.lookback_days)) AS since
        FROM attribution_events e
        JOIN camp c ON c.id = e.campaign_id
        WHERE e.tenant_id = %(tenant_id)s AND e.attribution_type = 'conversion'
          AND e.occurred_at >= %(start)s AND e.occurred_at < %(end)s
          AND (CAST(%(groups)s AS uuid[]) IS NULL OR c.grp = ANY(%(groups)s))
    )"""

# Touchpoints that can fall in some conversion's window: from the earliest window start to the end.
TOUCHES = """
    touch AS {materialized} (
        SELECT e.id, e.occurred_at AS at, e.listener_id, c.grp, e.campaign_id, e.episode_id
        FROM attribution_events e
        JOIN camp c ON c.id = e.campaign_id
        WHERE e.tenant_id = %(tenant_id)s AND e.attribution_type IN ('impression', 'click')
          AND e.occurred_at >= %(start)s - make_interval(days => %(max_lookback_days)s)
          AND e.occurred_at < %(end)s
          AND (CAST(%(groups)s AS uuid[]) IS NULL OR c.grp = ANY(%(groups)s))
    )"""

# Each conversion with each of its candidate touches.
PAIRS = """
    pair_src AS (
        SELECT v.id AS conv_id, v.at AS conv_at, v.since, v.revenue, v.currency,
               t.id AS touch_id, t.at AS touch_at, t.campaign_id, t.episode_id
        FROM conv v
        JOIN touch t ON t.listener_id = v.listener_id AND t.grp = v.grp AND t.at BETWEEN v.since AND v.at
    )"""

# Credits under every model for each (conversion, touch) pair of ``pair_src``: one window over each
# conversion's touches in order gives the rank, the count and the sum of the decay weights.
_CREDITS = f"""
    ranked AS (
        SELECT p.*,
               power(2::float8, least({MAX_EXPONENT},
                     extract(epoch FROM p.touch_at - p.since)::float8 / %(half_life_seconds)s)) AS decay,
               row_number() OVER w AS r,
               count(*) OVER w AS n,
               sum(power(2::float8, least({MAX_EXPONENT},
                   extract(epoch FROM p.touch_at - p.since)::float8 / %(half_life_seconds)s))) OVER w AS decay_total
        FROM pair_src p
        WINDOW w AS (PARTITION BY p.conv_id, p.conv_at ORDER BY p.touch_at, p.touch_id
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
    ),
    credited AS (
        SELECT k.*,
               CASE WHEN k.r = 1 THEN 1.0::float8 ELSE 0.0::float8 END AS first_touch,
               CASE WHEN k.r = k.n THEN 1.0::float8 ELSE 0.0::float8 END AS last_touch,
               1.0::float8 / k.n AS linear,
               k.decay / k.decay_total AS time_decay,
               CASE WHEN k.n = 1 THEN 1.0::float8
                    WHEN k.n = 2 THEN 0.5::float8
                    WHEN k.r = 1 OR k.r = k.n THEN 0.4::float8
                    ELSE 0.2::float8 / (k.n - 2) END AS position_based
        FROM ranked k
    )"""

MODEL_COLUMNS: Final = MODELS


def credit_sums(models: tuple[Model, ...] = MODELS, *, revenue_column: str = "revenue") -> str:
    """``sum(<model>) AS <model>_credit, sum(<model> × revenue) AS <model>_revenue`` for each model."""
    parts = []
    for model in models:
        if model not in MODELS:  # names go into SQL: only the known ones
            raise ValueError(f"unknown attribution model {model!r}")
        parts.append(f"sum({model}) AS {model}_credit")
        parts.append(f"sum({model} * coalesce({revenue_column}, 0)) AS {model}_revenue")
    return ",\n               ".join(parts)


def statement(select: str, *, pairs: str | None = None, whole_tenant: bool = False) -> str:
    """``WITH`` the conversions, touches, pairs and credits, then ``select`` (which reads ``credited``).

    ``whole_tenant``: the statement reads every campaign's events, so the touches are joined to the
    conversions as they are scanned (in parallel where the server allows); for one sponsor's
    campaigns they are read first, through the campaign index, which keeps the planner from looping
    over the conversions. ``pairs`` replaces the event-reading CTEs with any ``pair_src`` of the same
    columns (tests feed hand-made pairs through the very same credit SQL)."""
    touches = TOUCHES.replace("{materialized}", "NOT MATERIALIZED" if whole_tenant else "MATERIALIZED")
    sources = pairs if pairs is not None else ",".join((CAMPAIGN_GROUPS, CONVERSIONS, touches, PAIRS))
    return f"WITH {sources},{_CREDITS}\n{select}"


# Memory for the statement's hash joins and sorts (SET LOCAL: this transaction only). With the
# server's default (often 4 MB) a large tenant's pairs spill to disk and the statement runs 2-3x slower.
WORK_MEM = "128MB"


def seconds(days: float) -> float:
    return days * 86_400.0
