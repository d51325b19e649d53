"""Tenants: the networks that use Castmetrics, their tier, status and time zone."""
