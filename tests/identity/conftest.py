"""Identity tests use the shared helpers of tests/conftest.py (teams with a user per role, sign-up)."""

from __future__ import annotations

from tests.conftest import PASSWORD, Team, bearer, signup

__all__ = ["PASSWORD", "Team", "bearer", "signup"]
