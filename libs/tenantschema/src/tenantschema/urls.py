"""Database URL helpers shared by everything that connects to PostgreSQL."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url


def asyncpg_url(url: str | URL) -> URL:
    """The URL with the asyncpg driver (settings and stack.env may hold plain postgresql:// URLs)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL: {parsed.render_as_string(hide_password=True)}")
    return parsed.set(drivername="postgresql+asyncpg")


def with_database(url: str | URL, database: str) -> URL:
    """The same server and credentials, another database."""
    return make_url(url).set(database=database)


def libpq_url(url: str | URL) -> str:
    """A plain postgresql:// URL (for psql, pg_dump, asyncpg.connect), password included."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
