"""The repeated entity path: one entity by id or criteria (else NotFound), and keyset pages of them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar, Generic, Protocol, TypeVar

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from castmetrics.db.pagination import keyset_page
from castmetrics.db.session import own_rows
from castmetrics.errors import NotFound


class Identified(Protocol):
    """A mapped entity with an ``id`` column: unique within its tenant, whose ``tenant_id`` RLS supplies.

    Spelled as the class attribute (the column) rather than ``Mapped[...]``: mypy reads a model's
    ``Mapped`` attribute through its descriptor, as the value an instance holds."""

    id: ClassVar[InstrumentedAttribute[uuid.UUID]]


M = TypeVar("M", bound=Identified)


class Repository(Generic[M]):
    """How a service reads one kind of entity, declared once in the domain that owns it::

        _podcasts = Repository(Podcast, moment=Podcast.created_at)

    Reads go through the caller's session, so RLS applies: another tenant's row is missing exactly as
    an absent one is. Each lookup names its NotFound message: the words are the domain's and part of
    the API (problem+json ``detail``). Domain rules (who may see what, which rows count) stay in the
    service, as criteria or a statement it passes in.
    """

    def __init__(self, model: type[M], *, moment: InstrumentedAttribute[datetime]) -> None:
        self.model = model
        # Pages run newest first by ``moment``, then by id (the keyset; cursors encode both).
        self.moment = moment

    async def get(
        self,
        session: AsyncSession,
        ident: uuid.UUID,
        *criteria: ColumnElement[bool],
        missing: str,
        for_update: bool = False,
    ) -> M:
        """The entity with ``ident`` (and matching ``criteria``, such as its parent's id); else NotFound."""
        return await self.get_by(session, self.model.id == ident, *criteria, missing=missing, for_update=for_update)

    async def get_by(
        self, session: AsyncSession, *criteria: ColumnElement[bool], missing: str, for_update: bool = False
    ) -> M:
        """The first entity matching ``criteria``; else NotFound(``missing``). ``for_update`` locks its
        row until the transaction ends and reloads an entity the session already holds from that row."""
        statement = select(self.model).where(*criteria)
        if for_update:
            statement = statement.where(*own_rows(session, getattr(self.model, "tenant_id", None)))
            statement = statement.with_for_update().execution_options(populate_existing=True)
        entity = await session.scalar(statement)
        if entity is None:
            raise NotFound(missing)
        return entity

    async def page(
        self, session: AsyncSession, statement: Select[M] | None = None, *, limit: int, cursor: str | None
    ) -> tuple[Sequence[M], str | None]:
        """One page of ``statement``'s entities (all of them the session sees when None), newest first;
        the next page's cursor, or None on the last page."""
        return await keyset_page(
            session,
            select(self.model) if statement is None else statement,
            moment=self.moment,
            ident=self.model.id,
            limit=limit,
            cursor=cursor,
        )
