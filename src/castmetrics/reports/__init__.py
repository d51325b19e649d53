"""Sponsor reports: one campaign's delivery, pacing and attribution as JSON, CSV and PDF, and the
signed, expiring links that share them without a login."""
