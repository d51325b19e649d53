"""Alembic environment: runs on the connection ``castmetrics.db.migrate`` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from castmetrics.db import urls
from castmetrics.db.base import Base
from castmetrics.db.registry import load_all_models

load_all_models()
target_metadata = Base.metadata
config = context.config


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(urls.sqlalchemy_url(config.attributes["owner_url"]), poolclass=pool.NullPool)
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_online()
