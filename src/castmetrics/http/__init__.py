"""HTTP plumbing: problem+json errors, pagination, auth dependencies, middleware."""
