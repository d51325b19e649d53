"""Domain errors services raise; ``castmetrics.http.problems`` turns each into problem+json."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of the errors a service may raise. ``code`` names the problem type."""

    code = "error"
    title = "Error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(DomainError):
    code = "not-found"
    title = "Not found"


class Conflict(DomainError):
    code = "conflict"
    title = "Conflict"


class Invalid(DomainError):
    """Input that passed schema validation but breaks a domain rule."""

    code = "invalid"
    title = "Invalid request"


class Unauthorized(DomainError):
    code = "unauthorized"
    title = "Unauthorized"


class Forbidden(DomainError):
    code = "forbidden"
    title = "Forbidden"


class QuotaExceeded(DomainError):
    code = "quota-exceeded"
    title = "Quota exceeded"

    def __init__(self, quota: str, limit: int, usage: int) -> None:
        super().__init__(
            f"the {quota} quota of {limit} is reached (usage {usage})", quota=quota, limit=limit, usage=usage
        )


class RateLimited(DomainError):
    code = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after


class ContentTooLarge(DomainError):
    code = "content-too-large"
    title = "Content too large"


class UnsupportedMediaType(DomainError):
    code = "unsupported-media-type"
    title = "Unsupported media type"


class Unavailable(DomainError):
    """A dependency (the database) cannot be reached: try again after ``retry_after`` seconds."""

    code = "unavailable"
    title = "Service unavailable"

    def __init__(self, detail: str, retry_after: int = 5) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after


class NotConfigured(DomainError):
    """A feature whose settings are not given (billing without Stripe): retrying will not help."""

    code = "not-configured"
    title = "Not configured"


class InvalidSignature(DomainError):
    """A signed request (a Stripe webhook) that is unsigned, badly signed or too old."""

    code = "invalid-signature"
    title = "Invalid signature"
