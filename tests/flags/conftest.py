"""Flag tests start from the migration's global flags, whatever an earlier test changed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.factories.flags import reset_global_flags


@pytest.fixture(autouse=True)
def seeded_flags(owner_url: str, runtime_url: str) -> Iterator[None]:
    reset_global_flags(owner_url)
    yield
    reset_global_flags(owner_url)
