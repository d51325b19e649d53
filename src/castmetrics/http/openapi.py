"""The OpenAPI document: every operation documents its problem+json errors with one schema."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["type", "title", "status", "detail"],
    "additionalProperties": True,
}
ERROR_STATUSES = {
    "400": "Bad request",
    "401": "Missing or bad credentials",
    "402": "A quota is full",
    "403": "Not permitted",
    "404": "Not found (also another tenant's resource)",
    "405": "Method not allowed",
    "409": "Conflict",
    "413": "Request body too large",
    "422": "Validation failed",
    "429": "Rate limited (see Retry-After)",
    "500": "Internal error",
    "503": "Unavailable",
}


def install(app: FastAPI) -> None:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, description=app.description,
            routes=app.routes,
        )  # fmt: skip
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = PROBLEM_SCHEMA
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                responses = operation.setdefault("responses", {})
                for status, description in ERROR_STATUSES.items():
                    responses[status] = {"description": responses.get(status, {}).get("description", description),
                                         "content": problem}  # fmt: skip
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]
