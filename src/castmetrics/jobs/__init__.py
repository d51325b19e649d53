"""The procrastinate job queue on our PostgreSQL: app construction, tenant-scoped tasks, worker."""
