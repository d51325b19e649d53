"""Outgoing email: queued with the change that causes it, delivered over SMTP or to the log."""
