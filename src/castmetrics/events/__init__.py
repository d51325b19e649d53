"""Listener and attribution events: ingestion, day partitions, retention and rollups."""
