"""Who may call the platform admin routes: a platform token, checked against ``platform_admins``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import structlog
from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from castmetrics.auth.dependencies import principals_of, settings_of
from castmetrics.db.session import Database
from castmetrics.errors import Unauthorized
from castmetrics.http.deps import is_write
from castmetrics.platform import service
from castmetrics.platform.service import PlatformPrincipal

PLATFORM_ADMIN = "platform_admin"

platform_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="PlatformToken",
    description="A platform administrator's token from `/v1/admin/login` (tenant tokens and API keys do not work).",
)


def admin_database(request: Request) -> Database:
    """The owner's pool: only it sees across tenants and reads ``platform_admins``."""
    db = getattr(request.app.state, "admin_db", None)
    if not isinstance(db, Database):
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="platform administration needs DATABASE_URL")
    return db


def requires_platform_admin() -> Any:
    """Dependency: a valid platform token of an existing administrator. Answers the
    ``PlatformPrincipal``, whose owner transaction commits before the response is sent."""

    async def dependency(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Security(platform_bearer)
    ) -> AsyncIterator[PlatformPrincipal]:
        db = admin_database(request)
        if credentials is None:
            raise Unauthorized("a platform token is required: send Authorization: Bearer <token>")
        async with db.transaction() as session:
            admin = await service.admin_for_token(session, settings_of(request), credentials.credentials)
            structlog.contextvars.bind_contextvars(platform_admin_id=str(admin.id))
            yield PlatformPrincipal(session=session, admin=admin)
        if is_write(request):  # a tenant suspended or cancelled: no cached principal of it is used here again
            principals_of(request).clear()

    dependency.permission = PLATFORM_ADMIN  # type: ignore[attr-defined]
    return Depends(dependency, scope="function")
