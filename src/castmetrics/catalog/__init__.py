"""Catalog: podcasts and episodes, RSS ingestion that survives real-world feeds."""
