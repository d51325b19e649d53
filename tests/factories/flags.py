"""Feature-flag test state: the migration's global flags, brought back whatever an earlier test changed."""

from __future__ import annotations

import psycopg

from castmetrics.db import urls
from castmetrics.flags import service as flags


def reset_global_flags(owner_url: str) -> None:
    """Global flags are platform rows that outlive a test: bring back exactly the migration's seed."""
    with psycopg.connect(urls.libpq_url(owner_url), autocommit=True) as conn:
        conn.execute("DELETE FROM feature_flags WHERE name <> 'custom_roles'")
        conn.execute(
            "INSERT INTO feature_flags (name, description, enabled) "
            "VALUES ('custom_roles', 'Tenants may define roles of their own', true) "
            "ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, enabled = EXCLUDED.enabled"
        )
    flags.cache.invalidate()
