"""Database plumbing: engines, sessions, tenant context, embedded server, migrations."""
