"""The API's metric names are the registry's: the request schemas cannot drift from what the service computes."""

from __future__ import annotations

from typing import get_args

from castmetrics.analytics import metrics, schemas


def test_the_schema_literals_name_exactly_the_registered_metrics() -> None:
    assert set(get_args(schemas.Metric)) == set(metrics.METRICS)
    assert set(get_args(schemas.TopMetric)) == set(metrics.TOP_METRICS)
    assert len(metrics.METRICS) == len(set(metrics.METRICS))  # one registration per name
