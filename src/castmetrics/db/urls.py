"""Connection-URL conversions between libpq, SQLAlchemy and role credentials."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url


def parse(url: str) -> URL:
    parsed = make_url(url)
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {parsed.render_as_string(hide_password=True)}")
    return parsed.set(drivername="postgresql")


def sqlalchemy_url(url: str) -> str:
    """The URL for SQLAlchemy with the psycopg 3 driver."""
    return parse(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The URL for psycopg / libpq directly (procrastinate's connector)."""
    return parse(url).render_as_string(hide_password=False)


def with_credentials(url: str, user: str, password: str | None) -> str:
    return parse(url).set(username=user, password=password).render_as_string(hide_password=False)


def with_database(url: str, database: str) -> str:
    return parse(url).set(database=database).render_as_string(hide_password=False)


def safe(url: str) -> str:
    """The URL with its password masked, for logs and messages."""
    return parse(url).render_as_string(hide_password=True)
