"""Castmetrics: multi-tenant podcast analytics and sponsorship platform."""

__version__ = "0.1.0"
