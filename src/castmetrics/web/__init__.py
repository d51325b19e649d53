"""The web dashboard (pages arrive with the dashboard issue; until then the root leads to the API docs)."""
