"""Alembic revisions: one per schema change, reviewed SQL, never edited once landed."""
