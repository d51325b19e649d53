"""Signing in and out of the dashboard: the session cookie, CSRF on every form, and the account pages."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import httpx

from castmetrics.app import create_app
from castmetrics.auth import tokens
from castmetrics.web.session import CSRF_COOKIE, SESSION_COOKIE
from tests.factories.identity import PASSWORD
from tests.factories.web import csrf_of, sign_in
from tests.support.http import asgi_client


async def test_a_visitor_without_a_session_is_sent_to_the_login_form(client: httpx.AsyncClient) -> None:
    home = await client.get("/")
    assert home.status_code == 303
    assert home.headers["location"] == "/login"
    deep = await client.get("/?days=7")
    assert deep.headers["location"] == "/login?next=%2F%3Fdays%3D7"
    login = await client.get("/login")
    assert login.status_code == 200
    assert 'name="email"' in login.text and 'name="password"' in login.text
    assert re.search(r'<input type="hidden" name="csrf_token" value="[0-9a-f]{64}">', login.text)
    assert "default-src 'self'" in login.headers["content-security-policy"]


async def test_login_sets_an_httponly_samesite_cookie_and_shows_the_overview(client, make_team) -> None:
    team = await make_team()
    signed = await sign_in(client, team.emails["viewer"], tz="Europe/Paris")
    assert signed.status_code == 303 and signed.headers["location"] == "/"
    cookies = [v for k, v in signed.headers.multi_items() if k == "set-cookie"]
    session = next(c for c in cookies if c.startswith(f"{SESSION_COOKIE}="))
    assert "HttpOnly" in session and "SameSite=lax" in session and "Secure" not in session
    home = await client.get("/")
    assert home.status_code == 200
    assert "Overview" in home.text and "Viewer Person" in home.text
    assert '<span data-testid="zone">Europe/Paris</span>' in home.text


async def test_the_cookie_is_secure_over_https(app, make_team) -> None:
    team = await make_team()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        signed = await sign_in(http, team.emails["owner"])
    # over HTTPS the cookie carries the __Host- prefix (Secure, this host only, path /)
    session = next(
        v for k, v in signed.headers.multi_items() if k == "set-cookie" and v.startswith(f"__Host-{SESSION_COOKIE}=")
    )
    assert "Secure" in session and "HttpOnly" in session


async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(client, make_team) -> None:
    team = await make_team()
    await client.get("/login")
    missing = await client.post("/login", data={"email": team.emails["owner"], "password": PASSWORD})
    assert missing.status_code == 403
    assert "Form expired" in missing.text
    forged = await client.post(
        "/login", data={"email": team.emails["owner"], "password": PASSWORD, "csrf_token": "0" * 64}
    )
    assert forged.status_code == 403
    assert SESSION_COOKIE not in client.cookies
    # A token made for another visitor's nonce does not fit this visitor's cookie either.
    other = httpx.AsyncClient(transport=client._transport, base_url="http://testserver")
    async with other:
        theirs = csrf_of((await other.get("/login")).text)
    stolen = await client.post(
        "/login", data={"email": team.emails["owner"], "password": PASSWORD, "csrf_token": theirs}
    )
    assert stolen.status_code == 403


async def test_wrong_password_shows_the_form_again(client, make_team) -> None:
    team = await make_team()
    wrong = await sign_in(client, team.emails["owner"], password="not the password at all")
    assert wrong.status_code == 401
    assert "the email or password is wrong" in wrong.text
    assert (await client.get("/")).status_code == 303


async def test_next_only_leads_to_this_site(client, make_team) -> None:
    team = await make_team()
    page = await client.get("/login?next=//evil.example/x")
    form = {"csrf_token": csrf_of(page.text), "email": team.emails["owner"], "password": PASSWORD,
            "next": "https://evil.example/"}  # fmt: skip
    signed = await client.post("/login", data=form)
    assert signed.headers["location"] == "/"


async def test_sign_out_revokes_the_login(client, make_team) -> None:
    team = await make_team()
    await sign_in(client, team.emails["owner"])
    cookie = client.cookies[SESSION_COOKIE]
    page = await client.get("/")
    out = await client.post("/logout", data={"csrf_token": csrf_of(page.text)})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert (await client.get("/")).status_code == 303
    # The refresh token in the old cookie was revoked server-side: the API refuses it.
    refresh = cookie.strip('"').split("|")[1]
    again = await client.post("/v1/auth/refresh", json={"refresh_token": refresh})
    assert again.status_code == 401


async def test_an_expired_access_token_is_renewed_from_the_refresh_token(client, make_team, settings) -> None:
    team = await make_team()
    await sign_in(client, team.emails["owner"])
    access, _, refresh = client.cookies[SESSION_COOKIE].strip('"').partition("|")
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, f"{access[:-6]}AAAAAA|{refresh}")
    home = await client.get("/")
    assert home.status_code == 200
    renewed = client.cookies.get(SESSION_COOKIE, domain="testserver.local").strip('"')
    assert renewed.split("|")[1] != refresh  # rotated, like the API's refresh


async def test_signup_creates_a_network_and_signs_in(client) -> None:
    page = await client.get("/signup")
    form = {"csrf_token": csrf_of(page.text), "tenant_name": "Web Network", "tenant_slug": "web-network-1",
            "name": "Web Owner", "email": "web.owner@example.com", "password": PASSWORD, "tz": "UTC"}  # fmt: skip
    created = await client.post("/signup", data=form)
    assert created.status_code == 303, created.text
    home = await client.get(created.headers["location"])
    assert home.status_code == 200 and "Web Network" in home.text and "Welcome" in home.text
    # The same slug again is a conflict shown on the form, with what was typed kept.
    other = httpx.AsyncClient(transport=client._transport, base_url="http://testserver")
    async with other:
        token = csrf_of((await other.get("/signup")).text)
        again = await other.post("/signup", data={**form, "email": "second@example.com", "csrf_token": token})
    assert again.status_code == 409
    assert 'value="Web Network"' in again.text


async def test_signup_validation_errors_are_shown(client) -> None:
    page = await client.get("/signup")
    form = {"csrf_token": csrf_of(page.text), "tenant_name": "X", "tenant_slug": "Bad Slug!", "name": "N",
            "email": "not-an-email", "password": "short"}  # fmt: skip
    answer = await client.post("/signup", data=form)
    assert answer.status_code == 422
    assert "tenant slug" in answer.text and "email" in answer.text


async def test_password_reset_and_email_verification_pages(client, make_team, settings, db) -> None:
    team = await make_team()
    page = await client.get("/forgot-password")
    form = {"csrf_token": csrf_of(page.text), "email": team.emails["analyst"]}
    sent = await client.post("/forgot-password", data=form)
    assert sent.status_code == 200 and "we have sent it a link" in sent.text
    token = tokens.sign(settings.secret_key.get_secret_value(), "verify",
                        {"sub": str(team.user_ids["analyst"]), "tid": str(team.tenant_id),
                         "email": team.emails["analyst"]}, timedelta(hours=1))  # fmt: skip
    verified = await client.get("/verify-email", params={"token": token})
    assert verified.status_code == 200 and "confirmed" in verified.text
    broken = await client.get("/verify-email", params={"token": token[:-4] + "AAAA"})
    assert broken.status_code == 400
    reset_page = await client.get("/reset-password", params={"token": "nonsense"})
    bad = await client.post("/reset-password", data={"csrf_token": csrf_of(reset_page.text), "token": "nonsense",
                                                     "password": "a much better password 99"})  # fmt: skip
    assert bad.status_code == 422
    assert CSRF_COOKIE in client.cookies


async def test_cookies_are_secure_behind_a_trusted_https_proxy(settings, db, owner_db) -> None:
    for trusted, secure in (("127.0.0.1/32", True), ("", False)):
        app = create_app(settings.model_copy(update={"trusted_proxies": trusted}), database=db, admin_database=owner_db)
        async with asgi_client(app) as http:
            page = await http.get("/login", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"})
        name = f"__Host-{CSRF_COOKIE}" if secure else CSRF_COOKIE  # the prefix goes with Secure
        cookie = next(v for k, v in page.headers.multi_items() if k == "set-cookie" and v.startswith(f"{name}="))
        assert ("Secure" in cookie) is secure, (trusted, cookie)


async def test_pages_loaded_at_once_with_an_expired_session_renew_it_once(app, client, make_team) -> None:
    team = await make_team()
    await sign_in(client, team.emails["owner"])
    access, _, refresh = client.cookies[SESSION_COOKIE].strip('"').partition("|")
    expired = {"Cookie": f"{SESSION_COOKIE}={access[:-6]}AAAAAA|{refresh}"}
    async with asgi_client(app) as fresh:
        answers = await asyncio.gather(*(fresh.get(path, headers=expired) for path in ("/", "/?days=7", "/?days=90")))
    assert [a.status_code for a in answers] == [200, 200, 200]
    renewed = {a.cookies.get(SESSION_COOKIE) for a in answers}
    assert len(renewed) == 1  # one renewal, shared: the API saw the refresh token used once
    new_refresh = renewed.pop().strip('"').split("|")[1]
    again = await client.post("/v1/auth/refresh", json={"refresh_token": new_refresh})
    assert again.status_code == 200  # the login was not revoked as a reuse


async def test_a_dead_session_cookie_leads_to_the_login_form_not_a_loop(client, make_team) -> None:
    team = await make_team()
    await sign_in(client, team.emails["owner"])
    _, _, refresh = client.cookies[SESSION_COOKIE].strip('"').partition("|")
    await client.post("/v1/auth/logout", json={"refresh_token": refresh})  # the login ends elsewhere
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, f"expired.token.here|{refresh}", domain="testserver.local")
    home = await client.get("/")
    assert home.status_code == 303 and home.headers["location"] == "/login"
    assert any(v.startswith(f'{SESSION_COOKIE}=""') for k, v in home.headers.multi_items() if k == "set-cookie")
    client.cookies.set(SESSION_COOKIE, f"expired.token.here|{refresh}", domain="testserver.local")
    login = await client.get("/login")
    assert login.status_code == 200 and 'name="password"' in login.text


async def test_the_csrf_token_of_before_sign_in_is_worthless_after_it(client, make_team) -> None:
    team = await make_team()
    before = csrf_of((await client.get("/login")).text)
    signed = await client.post(
        "/login", data={"csrf_token": before, "email": team.emails["owner"], "password": PASSWORD, "next": "/"}
    )
    assert signed.status_code == 303
    assert any(v.startswith(f"{CSRF_COOKIE}=") for k, v in signed.headers.multi_items() if k == "set-cookie")
    out = await client.post("/logout", data={"csrf_token": before})
    assert out.status_code == 403
    assert (await client.get("/")).status_code == 200  # still signed in


async def test_a_csrf_token_from_another_session_does_not_fit(client, make_team) -> None:  # type: ignore[no-untyped-def]
    # given an attacker who signed in themselves and holds a valid (nonce, form token) pair of their session
    team = await make_team()
    attacker = httpx.AsyncClient(transport=client._transport, base_url="http://testserver")
    async with attacker:
        await sign_in(attacker, team.emails["viewer"])
        page = await attacker.get("/")
        token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
        assert token, page.text[:500]
        planted_nonce = attacker.cookies[CSRF_COOKIE]
    # when they plant that nonce in a signed-in victim's browser and post the form token with it
    await sign_in(client, team.emails["owner"])
    client.cookies.set(CSRF_COOKIE, planted_nonce, domain="testserver.local")
    posted = await client.post("/logout", data={"csrf_token": token.group(1)})
    # then the victim's session refuses it: the token was bound to the attacker's session
    assert posted.status_code == 403 and "Form expired" in posted.text
