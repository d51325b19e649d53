"""``castmetrics admin create``, run as a real subprocess against the test database."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import psycopg
import pytest

from castmetrics.config import Settings
from castmetrics.db import urls
from tests.factories.identity import PASSWORD


def admin_create(settings: Settings, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "CASTMETRICS_APP_ROLE": settings.app_role,
        "CASTMETRICS_SECRET_KEY": settings.secret_key.get_secret_value(),
        "CASTMETRICS_LOG_LEVEL": "WARNING",
    }
    return subprocess.run(
        [sys.executable, "-m", "castmetrics", "admin", "create", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
        # No controlling terminal: the hidden prompt reads stdin, as it would from a pipe.
        start_new_session=True,
    )


async def test_created_admin_can_log_in(settings: Settings, runtime_url: str, http: httpx.AsyncClient) -> None:
    created = admin_create(
        settings, "ops@castmetrics.example.com", "--name", "Pat Operator", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert created.returncode == 0, created.stderr
    assert "Created platform administrator ops@castmetrics.example.com" in created.stdout
    login = await http.post("/v1/admin/login", json={"email": "ops@castmetrics.example.com", "password": PASSWORD})
    assert login.status_code == 200, login.text
    tenants = await http.get("/v1/admin/tenants", headers={"Authorization": f"Bearer {login.json()['access_token']}"})
    assert tenants.status_code == 200

    again = admin_create(
        settings, "OPS@castmetrics.example.com", "--name", "Pat Again", "--password-stdin", stdin=PASSWORD
    )
    assert again.returncode == 1
    assert "already a platform administrator" in again.stderr


async def test_password_can_be_typed_at_the_prompt(
    settings: Settings, runtime_url: str, http: httpx.AsyncClient
) -> None:
    mistyped = admin_create(settings, "typist@castmetrics.example.com", "--name", "Tess", stdin=f"{PASSWORD}\nother\n")
    assert mistyped.returncode != 0 and "do not match" in mistyped.stderr + mistyped.stdout
    typed = admin_create(settings, "typist@castmetrics.example.com", "--name", "Tess", stdin=f"{PASSWORD}\n" * 2)
    assert typed.returncode == 0, typed.stderr
    login = await http.post("/v1/admin/login", json={"email": "typist@castmetrics.example.com", "password": PASSWORD})
    assert login.status_code == 200


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("ops@castmetrics.example.com", "--name", "Pat", "--password-stdin"), "password1", "password"),
        (("ops@castmetrics.example.com", "--name", "Pat", "--password-stdin"), "", "password"),
        (("not-an-email", "--name", "Pat", "--password-stdin"), PASSWORD, "email"),
        (("ops@castmetrics.example.com", "--name", "", "--password-stdin"), PASSWORD, "name"),
    ],
)
def test_bad_input_is_refused_before_anything_is_stored(
    settings: Settings, owner_url: str, runtime_url: str, args: tuple[str, ...], stdin: str, message: str
) -> None:
    result = admin_create(settings, *args, stdin=stdin)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    with psycopg.connect(urls.libpq_url(owner_url)) as conn:
        assert conn.execute("SELECT count(*) FROM platform_admins").fetchone() == (0,)


def test_help_names_the_command(settings: Settings) -> None:
    environment = {**os.environ, "DATABASE_URL": settings.database_url or ""}
    result = subprocess.run(
        [sys.executable, "-m", "castmetrics", "admin", "create", "--help"],
        capture_output=True, text=True, env=environment, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0
    assert "--password-stdin" in result.stdout and "--name" in result.stdout
