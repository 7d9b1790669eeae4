"""The async façade: off-loop work, clear errors, and no request log lost in an outage."""
from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time

import pytest
from sqlalchemy import create_engine, func, insert, select

from storage.database import Database
from storage.errors import InvalidInput, NotFound, StorageUnavailable
from storage.log import get_request
from storage.models import Base, Request, User
from storage.ratings import rate
from storage.spool import Spool

DOWN_URL = "postgresql+psycopg://postgres@127.0.0.1:1/test"  # nothing listens on port 1


def requests_count(db: Database) -> int:
    with db.sessions() as s:
        return s.execute(select(func.count()).select_from(Request)).scalar_one()


def test_units_of_work_commit_and_return(committed, migrated_url, record):
    async def main():
        async with Database(migrated_url, spool=None) as db:
            logged = await db.log_request(record())
            user = await db.run(lambda s: get_request(s, logged.request_id).user_id)
            await db.run(rate, logged.generation_id, user, -1)
            await db.ping()
            return logged, requests_count(db)

    logged, n = asyncio.run(main())
    assert logged.request_id and logged.generation_id and n == 1


def test_work_runs_off_the_event_loop(committed, migrated_url):
    released = threading.Event()

    async def main():
        async with Database(migrated_url, spool=None) as db:
            # The worker waits for the loop to set the event: if run() blocked the loop,
            # the event would never be set and the wait would time out.
            task = asyncio.ensure_future(db.run(lambda s: released.wait(10)))
            await asyncio.sleep(0.01)
            released.set()
            return await task

    assert asyncio.run(main()) is True


def test_refusals_are_storage_errors(committed, migrated_url, record):
    async def main():
        async with Database(migrated_url, spool=None) as db:
            with pytest.raises(NotFound, match="no generation 4242 to rate"):
                await db.run(rate, 4242, 1, 1)
            rec = record()
            await db.log_request(rec)
            dup = insert(Request.__table__).values(uid=rec.uid, user_id=1, chat_id=1,
                                                   outcome="ok")
            with pytest.raises(InvalidInput, match="refused by the database"):
                await db.run(lambda s: s.execute(dup))
            with pytest.raises(InvalidInput, match="outcome must be one of"):
                await db.log_request(record(outcome="??"))

    asyncio.run(main())


def test_an_outage_spools_requests_and_replay_stores_them_once(committed, migrated_url,
                                                               record, tmp_path, caplog):
    spool = tmp_path / "spool.jsonl"
    recs = [record(prime=f"p{i}") for i in range(3)]

    async def outage():
        async with Database(DOWN_URL, spool=spool, retries=1) as db:
            with pytest.raises(StorageUnavailable, match="database unavailable"):
                await db.ping()
            return [await db.log_request(r) for r in recs]

    with caplog.at_level(logging.WARNING, logger="storage"):
        assert asyncio.run(outage()) == [None, None, None]
    assert len(spool.read_text().splitlines()) == 3
    assert "spooled" in caplog.text and "unavailable" in caplog.text
    Spool(spool).append(recs[0])  # a record stored twice must still count once

    async def back():
        async with Database(migrated_url, spool=spool) as db:
            await db.log_request(record(prime="after"))  # also replays the spool
            again = await db.replay_spool()
            return requests_count(db), again

    count, again = asyncio.run(back())
    assert count == 4 and again == (0, 0) and spool.read_text() == ""
    with Database(migrated_url, spool=None).sessions() as s:
        primes = set(s.execute(select(Request.prime)).scalars())
    assert primes == {"p0", "p1", "p2", "after"}


def test_a_locked_sqlite_file_is_retried_then_spooled(tmp_path, record):
    from storage.__main__ import upgrade
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    upgrade(url)
    spool = tmp_path / "spool.jsonl"
    locker = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock

    async def main():
        async with Database(url, spool=spool, retries=1, busy_timeout_ms=50) as db:
            assert await db.log_request(record(prime="while locked")) is None
            locker.execute("ROLLBACK")
            assert await db.log_request(record(prime="unlocked")) is not None
            return requests_count(db)

    try:
        assert asyncio.run(main()) == 2
    finally:
        locker.close()


def test_unreplayable_spool_lines_are_kept_aside(tmp_path, record):
    spool = Spool(tmp_path / "s.jsonl")
    spool.append(record(prime="good"))
    with open(spool.path, "a") as f:
        f.write("{not json\n")
    stored = []
    assert spool.replay(lambda r: stored.append(r.prime)) == (1, 0)
    assert stored == ["good"] and "{not json" in spool.rejected_path.read_text()


def test_replay_stops_while_the_database_is_still_down(tmp_path, record):
    spool = Spool(tmp_path / "s.jsonl")
    for i in range(3):
        spool.append(record(prime=str(i)))

    def store(rec):
        if rec.prime == "1":
            raise StorageUnavailable("still down")

    assert spool.replay(store) == (1, 2)
    assert [line.count('"prime": "') for line in spool.path.read_text().splitlines()] == [
        1, 1]


def test_an_unmigrated_database_is_unavailable_not_a_crash(fresh_url, record, tmp_path):
    async def main():
        async with Database(fresh_url, spool=tmp_path / "s.jsonl", retries=1) as db:
            return await db.log_request(record())

    assert asyncio.run(main()) is None  # spooled until `python -m storage migrate`
    assert len((tmp_path / "s.jsonl").read_text().splitlines()) == 1


def test_an_unwritable_spool_is_reported_not_silent(tmp_path, record, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the spool's folder should be

    async def main():
        async with Database(DOWN_URL, spool=blocker / "s.jsonl", retries=0) as db:
            with pytest.raises(StorageUnavailable):
                await db.log_request(record())

    with caplog.at_level(logging.ERROR, logger="storage"):
        asyncio.run(main())
    assert "NOT logged" in caplog.text


def test_known_ids_are_reused_and_a_vanished_one_is_recovered(committed, migrated_url,
                                                               record):
    async def main():
        async with Database(migrated_url, spool=None) as db:
            first = await db.log_request(record())
            second = await db.log_request(record())  # ids from the cache
            with db.sessions.begin() as s:  # a restored backup: the rows are gone
                for table in reversed(Base.metadata.sorted_tables):
                    s.execute(table.delete())
            third = await db.log_request(record())  # refused with cached ids, retried
            with db.sessions() as s:
                user = s.get(User, third.user_id)
            return first, second, user, requests_count(db)

    first, second, user, n = asyncio.run(main())
    assert (first.user_id, first.chat_id) == (second.user_id, second.chat_id)
    assert user is not None and user.external_id == "42" and n == 1


def test_every_spooled_row_arrives_even_with_a_lone_surrogate(committed, migrated_url,
                                                               record, tmp_path):
    """Ten requests through an outage, one prime with a lone surrogate (what the
    console makes of undecodable bytes) and one with U+2028: all ten are stored."""
    spool = tmp_path / "spool.jsonl"
    primes = [f"p{i}" for i in range(10)]
    primes[3], primes[6] = "broken \udcff byte", "line\u2028separator \x85 too"
    recs = [record(prime=p) for p in primes]

    async def outage():
        async with Database(DOWN_URL, spool=spool, retries=0) as db:
            return [await db.log_request(r) for r in recs]

    assert asyncio.run(outage()) == [None] * 10

    async def back():
        async with Database(migrated_url, spool=spool) as db:
            return await db.replay_spool(), requests_count(db)

    assert asyncio.run(back()) == ((10, 0), 10)
    with Database(migrated_url, spool=None).sessions() as s:
        stored = set(s.execute(select(Request.prime)).scalars())
    primes[3] = "broken \ufffd byte"  # storable text: the surrogate becomes U+FFFD
    assert stored == set(primes)


def test_a_lock_held_elsewhere_is_waited_for_a_bounded_time(committed, migrated_url,
                                                            backend, record, tmp_path):
    """Another process holds a lock on the requests table: logging gives up after the
    busy (SQLite) or statement/lock (PostgreSQL) timeout, spools, and stores once free."""
    spool = tmp_path / "spool.jsonl"
    engine = create_engine(migrated_url)
    locker = engine.connect()
    if backend == "sqlite":
        locker.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        locker.begin()
        locker.exec_driver_sql("LOCK TABLE requests IN ACCESS EXCLUSIVE MODE")

    async def main():
        async with Database(migrated_url, spool=spool, retries=1, busy_timeout_ms=300,
                            statement_timeout_ms=300) as db:
            start = time.monotonic()
            spooled = await db.log_request(record(prime="while locked"))
            waited = time.monotonic() - start
            locker.rollback() if backend == "postgresql" else locker.exec_driver_sql(
                "ROLLBACK")
            await db.replay_spool()
            return spooled, waited, requests_count(db)

    try:
        spooled, waited, count = asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        locker.close()
        engine.dispose()
    assert spooled is None and waited < 5, waited
    assert count == 1
