"""Quotas by tier: limits, usage, refusals, and the 80% / 100% threshold events."""
