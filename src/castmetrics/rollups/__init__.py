"""Refreshing and rebuilding every kind of rollup (listener and download) from the invalidation log."""
