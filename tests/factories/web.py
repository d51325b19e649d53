"""Dashboard test helpers: reading the CSRF token out of a page, and signing in through the login form."""

from __future__ import annotations

import re

import httpx

from tests.factories.identity import PASSWORD

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def sign_in(http: httpx.AsyncClient, email: str, password: str = PASSWORD, tz: str = "UTC") -> httpx.Response:
    """Sign in through the dashboard's login form (with its CSRF token); answers the form's response."""
    page = await http.get("/login")
    assert page.status_code == 200
    form = {"csrf_token": csrf_of(page.text), "email": email, "password": password, "next": "/", "tz": tz}
    return await http.post("/login", data=form)
