"""Imports every domain's models so the shared metadata knows all tables (Alembic, tests)."""

from __future__ import annotations

import importlib

DOMAINS_WITH_MODELS = (
    "tenancy", "outbox", "audit", "identity", "mail", "quotas", "preferences", "flags", "platform", "catalog",
    "sponsorship", "reports", "workflows", "billing",
)  # fmt: skip


def load_all_models() -> None:
    for domain in DOMAINS_WITH_MODELS:
        importlib.import_module(f"castmetrics.{domain}.models")
