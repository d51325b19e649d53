"""The command line, run as a real subprocess against the test database."""

from __future__ import annotations

import json

import pytest

from castmetrics.config import Settings
from tests.support.cli import run_cli


def test_help_lists_every_command(settings: Settings) -> None:
    result = run_cli(settings, "--help")
    assert result.returncode == 0
    for command in ("serve", "worker", "migrate", "demo", "tenant"):
        assert command in result.stdout
    tenant_help = run_cli(settings, "tenant", "--help")
    for command in ("create", "list", "suspend", "activate"):
        assert command in tenant_help.stdout


def test_migrate_is_idempotent(settings: Settings, runtime_url: str) -> None:
    first = run_cli(settings, "migrate")
    second = run_cli(settings, "migrate")
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "latest schema" in second.stdout


def test_tenant_lifecycle(settings: Settings, runtime_url: str) -> None:
    created = run_cli(settings, "tenant", "create", "Night Owl Audio", "--slug", "night-owl", "--tier", "pro")
    assert created.returncode == 0, created.stderr
    assert "night-owl" in created.stdout

    suspended = run_cli(settings, "tenant", "suspend", "night-owl")
    assert suspended.returncode == 0 and "suspended" in suspended.stdout

    listed = run_cli(settings, "tenant", "list", "--json")
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["slug"], r["status"], r["subscription_tier"]) for r in rows] == [("night-owl", "suspended", "pro")]

    activated = run_cli(settings, "tenant", "activate", "night-owl")
    assert activated.returncode == 0 and "active" in activated.stdout
    table = run_cli(settings, "tenant", "list", "--status", "active")
    assert "night-owl" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("tenant", "create", "X", "--slug", "Not A Slug"), "slug"),
        (("tenant", "create", "X", "--slug", "ok-slug", "--time-zone", "Nowhere/City"), "IANA"),
        (("tenant", "create", "X", "--slug", "ok-slug", "--tier", "gold"), "subscription_tier"),
        (("tenant", "list", "--status", "sleeping"), "--status"),
    ],
)
def test_bad_input_is_refused_with_a_message(
    settings: Settings, runtime_url: str, args: tuple[str, ...], message: str
) -> None:
    result = run_cli(settings, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_duplicates_and_unknown_slugs_fail_cleanly(settings: Settings, runtime_url: str) -> None:
    assert run_cli(settings, "tenant", "create", "One", "--slug", "dupe").returncode == 0
    duplicate = run_cli(settings, "tenant", "create", "Two", "--slug", "dupe")
    assert duplicate.returncode == 1 and "already in use" in duplicate.stderr
    missing = run_cli(settings, "tenant", "suspend", "no-such-tenant")
    assert missing.returncode == 1 and "no tenant" in missing.stderr
    listed = run_cli(settings, "tenant", "list", "--json")
    assert [json.loads(line)["name"] for line in listed.stdout.splitlines()] == ["One"]


def test_demo_is_idempotent(settings: Settings, runtime_url: str) -> None:
    catalog_only = {"CASTMETRICS_DEMO_EVENTS": "0"}  # listening has its own tests (tests/demo)
    first = run_cli(settings, "demo", env=catalog_only)
    second = run_cli(settings, "demo", env=catalog_only)
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout and "already present" in second.stdout
    assert "Listening:" not in first.stdout + second.stdout
    for role in ("owner", "admin", "sales", "analyst", "viewer"):
        assert f"{role}@demo.example.com" in second.stdout
    listed = run_cli(settings, "tenant", "list", "--json")
    demo = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(d["slug"], d["subscription_tier"]) for d in demo] == [("demo", "pro")]


def test_bad_database_url_is_a_clear_error(settings: Settings) -> None:
    result = run_cli(settings, "migrate", env={"DATABASE_URL": "mysql://root@localhost/x"})
    assert result.returncode == 2
    assert "not a PostgreSQL URL" in result.stderr


def test_production_refuses_the_development_secret(settings: Settings) -> None:
    result = run_cli(
        settings, "migrate", env={"CASTMETRICS_ENVIRONMENT": "production", "CASTMETRICS_SECRET_KEY": "short"}
    )
    assert result.returncode == 2 and "CASTMETRICS_SECRET_KEY" in result.stderr
