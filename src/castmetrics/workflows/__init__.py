"""Workflows: steps run in order when a domain event happens, retried, durable, tenant-scoped."""
