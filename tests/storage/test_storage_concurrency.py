"""Many writers at once, with real commits: nothing lost, nothing counted twice.

These use ``committed`` (not the rollback session), because concurrency needs separate
connections that see each other's commits.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

from sqlalchemy import func, select

from storage.database import Database
from storage.log import get_or_create_user, log_request
from storage.models import Rating, SettingChange, User
from storage.ratings import rate
from storage.settings import effective_temperature, set_temperature, temperature_history

RATERS = 50
ROUNDS = 3  # each rater changes their mind: +1, -1, then a final value


def final_value(i: int) -> int:
    return 1 if i % 3 else -1


def setup_generation(sessions, record) -> tuple[int, list[int]]:
    with sessions.begin() as s:
        gen = log_request(s, record()).generation_id
        users = [get_or_create_user(s, "telegram", f"rater{i}") for i in range(RATERS)]
    return gen, users


def check_ratings(sessions, gen: int, users: list[int]) -> None:
    with sessions() as s:
        rows = dict(s.execute(select(Rating.user_id, Rating.value)
                              .where(Rating.generation_id == gen)).all())
    assert len(rows) == RATERS  # exactly one row per user
    assert rows == {u: final_value(i) for i, u in enumerate(users)}  # the last value


def votes(i: int) -> list[int]:
    return [1, -1][: ROUNDS - 1] + [final_value(i)]


def test_fifty_threads_rating_one_generation(committed, record):
    gen, users = setup_generation(committed, record)

    def rater(i: int) -> None:
        for value in votes(i):  # one transaction per vote, as the bot does
            with committed.begin() as s:
                rate(s, gen, users[i], value)

    with ThreadPoolExecutor(RATERS) as pool:
        list(pool.map(rater, range(RATERS)))
    check_ratings(committed, gen, users)


def test_fifty_raters_through_the_async_database(committed, record, migrated_url):
    gen, users = setup_generation(committed, record)

    async def rater(db: Database, i: int) -> None:
        for value in votes(i):
            await db.run(rate, gen, users[i], value)

    async def main() -> None:
        async with Database(migrated_url, spool=None, workers=8) as db:
            await asyncio.gather(*(rater(db, i) for i in range(RATERS)))

    asyncio.run(main())
    check_ratings(committed, gen, users)


def test_first_contact_from_many_threads_creates_one_user(committed):
    def contact(_):
        with committed.begin() as s:
            return get_or_create_user(s, "discord", "newcomer", "New")

    with ThreadPoolExecutor(16) as pool:
        ids = set(pool.map(contact, range(32)))
    with committed() as s:
        assert s.execute(select(func.count()).select_from(User)).scalar_one() == 1
    assert len(ids) == 1


def test_concurrent_admins_leave_a_consistent_audit_trail(committed):
    with committed.begin() as s:
        admins = [get_or_create_user(s, "telegram", f"admin{i}") for i in range(8)]
    values = [round(0.1 * (i + 1), 1) for i in range(24)]

    def admin_sets(i: int) -> None:
        with committed.begin() as s:
            set_temperature(s, values[i], by_user_id=admins[i % 8], style="austen")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(admin_sets, range(len(values))))
    with committed() as s:
        trail = temperature_history(s, style="austen", limit=100)[::-1]  # oldest first
        current = effective_temperature(s, "austen", None, 0.7)
        total = s.execute(select(func.count()).select_from(SettingChange)).scalar_one()
    assert total == len(values) and sorted(t.new_value for t in trail) == sorted(values)
    assert trail[0].old_value is None
    for before, after in pairwise(trail):  # each change starts from the last one
        assert after.old_value == before.new_value
    assert current == (trail[-1].new_value, "style")
