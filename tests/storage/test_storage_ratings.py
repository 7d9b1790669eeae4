"""Ratings: one per person per generation, changeable, refused cleanly when impossible."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from storage.errors import InvalidInput, NotFound
from storage.log import get_or_create_user, log_request
from storage.models import Rating
from storage.ratings import rate, rating_by, score


def ratings_count(session) -> int:
    return session.execute(select(func.count()).select_from(Rating)).scalar_one()


def test_rating_again_changes_the_value_and_keeps_one_row(session, record):
    gen = log_request(session, record()).generation_id
    bob = get_or_create_user(session, "telegram", "7", "Bob")
    first = rate(session, gen, bob, 1)
    created = session.get(Rating, first).created_at
    assert rate(session, gen, bob, -1) == first
    session.expire_all()
    row = session.get(Rating, first)
    assert (row.value, row.created_at) == (-1, created)
    assert row.updated_at >= created
    assert ratings_count(session) == 1 and rating_by(session, gen, bob) == -1


def test_score_counts_each_person_once(session, record):
    gen = log_request(session, record()).generation_id
    users = [get_or_create_user(session, "discord", str(i)) for i in range(5)]
    for user, value in zip(users, [1, 1, 1, -1, -1], strict=True):
        rate(session, gen, user, value)
    rate(session, gen, users[0], 1)  # the same vote again changes nothing
    assert score(session, gen) == (3, 2) and score(session, gen).net == 1
    assert score(session, gen + 1000) == (0, 0)
    assert rating_by(session, gen, get_or_create_user(session, "discord", "x")) is None


def test_rating_a_missing_generation_is_refused(session, record):
    bob = get_or_create_user(session, "telegram", "7")
    with pytest.raises(NotFound, match="no generation 12345 to rate"):
        rate(session, 12345, bob, 1)
    assert ratings_count(session) == 0


def test_rating_by_a_missing_user_is_refused(session, record):
    gen = log_request(session, record()).generation_id
    with pytest.raises(NotFound, match="no user 999"):
        rate(session, gen, 999, 1)


@pytest.mark.parametrize("value", [0, 2, -2, True, 1.0, "1", None])
def test_only_plus_or_minus_one(session, record, value):
    gen = log_request(session, record()).generation_id
    bob = get_or_create_user(session, "telegram", "7")
    with pytest.raises(InvalidInput, match=r"a rating is \+1 or -1"):
        rate(session, gen, bob, value)
    assert ratings_count(session) == 0
