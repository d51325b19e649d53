"""Property-based checks of every documented route against the app's own OpenAPI schema.

Later issues' routes are covered automatically: the schema is read from the running app. (The
operations are walked here rather than through ``schemathesis.pytest.from_fixture``, whose lazy
loader does not work with pytest 9.)
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

MAX_EXAMPLES = 30


def test_api_conforms_to_its_schema(live_server: str) -> None:
    schema = schemathesis.openapi.from_url(f"{live_server}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 3  # healthz, readyz, metrics at least
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case: schemathesis.Case) -> None:
            # no 5xx, responses match their documented schemas, status codes and content types
            case.call_and_validate()

        try:
            check()
        except Exception as exc:  # collected so one run reports every failing operation
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
