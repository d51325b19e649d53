"""Dashboard routes: the page modules, the static files, and how page errors and missing sessions look."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from castmetrics.errors import NotFound
from castmetrics.web.api import ApiError
from castmetrics.web.pages import account, campaigns, overview, podcasts, settings, workflows
from castmetrics.web.session import LoginRequired, PageError, clear_session, login_url, page_error
from castmetrics.web.templating import redirect, render

router = APIRouter(include_in_schema=False)
for module in (account, overview, podcasts, campaigns, workflows, settings):
    router.include_router(module.router)

STATIC = {"app.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8"}


@router.get("/static/{name}")
async def static(name: str) -> Response:
    """The dashboard's own stylesheet and script (no CDN, nothing third-party)."""
    if name not in STATIC:
        raise NotFound("no such file")
    body = files("castmetrics.web").joinpath("static", name).read_bytes()
    return Response(body, media_type=STATIC[name], headers={"Cache-Control": "public, max-age=300"})


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    response = redirect(request, login_url(exc.next_path))
    clear_session(request, response)  # a dead session must not send the login page back here
    return response


async def _api_refusal(request: Request, exc: Exception) -> Response:
    """An API answer a page did not expect: its error page, never a bare 500."""
    assert isinstance(exc, ApiError)
    return await _page_error(request, page_error(exc))


async def _page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    context = {"title": exc.title, "detail": exc.detail, "status": exc.status}
    return render(request, "error.html", context, status=exc.status)


def install(app: FastAPI) -> None:
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(PageError, _page_error)
    app.add_exception_handler(ApiError, _api_refusal)
