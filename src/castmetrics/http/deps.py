"""Dependencies every route shares: the database, and whether a request writes."""

from __future__ import annotations

from fastapi import Request

from castmetrics.db.session import Database

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_database(request: Request) -> Database:
    db = request.app.state.db
    assert isinstance(db, Database)
    return db


def is_write(request: Request) -> bool:
    return request.method.upper() not in READ_METHODS
