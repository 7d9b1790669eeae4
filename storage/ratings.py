"""Ratings: one +1 or -1 per person per generation; rating again replaces the value.

The write is a single INSERT ... ON CONFLICT DO UPDATE, so people rating the same text
at the same moment neither duplicate rows nor lose votes, on SQLite and PostgreSQL.

    from storage.ratings import rate
    rate(session, generation_id, user_id, +1)
"""
from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from storage.errors import InvalidInput, NotFound
from storage.models import Generation, Rating, User, utcnow
from storage.upsert import upsert


class Score(NamedTuple):
    up: int
    down: int

    @property
    def net(self) -> int:
        return self.up - self.down


def rate(session: Session, generation_id: int, user_id: int, value: int) -> int:
    """Record ``user_id``'s rating (+1 or -1) of a generation; the rating row's id.

    ``NotFound`` when the generation or the user does not exist (nothing is written).
    """
    if type(value) is not int or value not in (1, -1):  # not True, not 1.0
        raise InvalidInput(f"a rating is +1 or -1, got {value!r}")
    if session.get(Generation, generation_id) is None:
        raise NotFound(f"no generation {generation_id} to rate")
    if session.get(User, user_id) is None:
        raise NotFound(f"no user {user_id}")
    now = utcnow()
    return upsert(session, Rating.__table__,
                  {"generation_id": generation_id, "user_id": user_id, "value": value,
                   "created_at": now, "updated_at": now},
                  keys=["generation_id", "user_id"], update=["value", "updated_at"])


def rating_by(session: Session, generation_id: int, user_id: int) -> int | None:
    """The user's current rating of the generation, or None."""
    return session.execute(select(Rating.value).where(
        Rating.generation_id == generation_id, Rating.user_id == user_id)).scalar()


def score(session: Session, generation_id: int) -> Score:
    """Up and down votes on one generation."""
    up, down = session.execute(select(
        func.coalesce(func.sum(case((Rating.value > 0, 1), else_=0)), 0),
        func.coalesce(func.sum(case((Rating.value < 0, 1), else_=0)), 0),
    ).where(Rating.generation_id == generation_id)).one()
    return Score(int(up), int(down))
