"""INSERT ... ON CONFLICT for SQLite and PostgreSQL (the two backends we support), and
``rows_affected`` for the conditional UPDATEs and DELETEs beside them.

Both dialects spell it the same way in SQLAlchemy, but through their own ``insert``;
this picks the right one from the session's bind. An atomic upsert is what keeps 50
people rating at once from creating duplicate rows or failing on a unique key.

Statements are built once per (dialect, table, keys) and the values are passed at
execution: SQLAlchemy then reuses their cache keys and compiled SQL, which halves the
Python cost of logging a request (see bench/storage.py).
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, Table, Update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

_INSERTS: dict[str, Callable[[Table], sqlite.Insert | postgresql.Insert]] = {
    "sqlite": sqlite.insert, "postgresql": postgresql.insert}


def _dialect(session: Session) -> str:
    name = session.get_bind().dialect.name
    if name not in _INSERTS:
        raise NotImplementedError(f"upsert is not implemented for {name!r}")
    return name


@functools.cache
def _ignore_stmt(dialect: str, table: Table, keys: tuple[str, ...]):
    return _INSERTS[dialect](table).on_conflict_do_nothing(
        index_elements=list(keys)).returning(table.c.id)


@functools.cache
def _upsert_stmt(dialect: str, table: Table, keys: tuple[str, ...],
                 update: tuple[str, ...]):
    stmt = _INSERTS[dialect](table)
    return stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: stmt.excluded[c] for c in update}
    ).returning(table.c.id)


def rows_affected(session: Session, stmt: Update | Delete) -> int:
    """Run an UPDATE or DELETE; how many rows it matched (the driver's rowcount)."""
    # Session.execute is typed as returning Result, but DML gives a CursorResult.
    result = session.execute(stmt)
    return cast(CursorResult, result).rowcount or 0


def insert_ignore(session: Session, table: Table, values: dict[str, Any],
                  keys: list[str]) -> int | None:
    """Insert unless a row with the same ``keys`` exists; the new id, or None if it did."""
    stmt = _ignore_stmt(_dialect(session), table, tuple(keys))
    return session.execute(stmt, values).scalar()


def upsert(session: Session, table: Table, values: dict[str, Any], keys: list[str],
           update: list[str]) -> int:
    """Insert, or update the ``update`` columns of the row with the same ``keys``; its id."""
    stmt = _upsert_stmt(_dialect(session), table, tuple(keys), tuple(update))
    return session.execute(stmt, values).scalar_one()
