"""Field types request bodies share: validated the same way everywhere, stored as plain values."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, AnyHttpUrl, Field, TypeAdapter

_HTTP_URL = TypeAdapter(AnyHttpUrl)


def _http_url(value: str) -> str:
    # Validated (and normalised) as an http(s) URL, kept as the string the columns hold.
    return str(_HTTP_URL.validate_python(value))


Url = Annotated[
    str,
    Field(min_length=1, max_length=2048, description="An http(s) URL.", json_schema_extra={"format": "uri"}),
    AfterValidator(_http_url),
]
