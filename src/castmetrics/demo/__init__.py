"""The demo tenant: seeded idempotently so a newcomer sees the whole product populated."""
