"""Replies while the database is locked or gone: texts and /help never wait on it, and
every request still reaches the log (spooled, then stored once it is back).

The real core (tiny model, in-process engine) on a SQLite file another connection
locks, and on the real PostgreSQL (127.0.0.1:5432, database ``test``, a fresh schema)
reached through a TCP proxy the test unplugs.

    .venv/bin/python -m pytest tests/bot/test_database_down.py -q
"""
from __future__ import annotations

import sqlite3
import time
import uuid

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from tcp_proxy import Proxy

from bot.core import Request
from storage.__main__ import upgrade
from storage.database import Database
from storage.models import Request as RequestRow

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def req(text: str) -> Request:
    return Request("telegram", "c1", "42", user_name="u42", text=text)


async def timed(core, text: str):
    start = time.monotonic()
    reply = await core.handle(req(text))
    return reply, time.monotonic() - start


def test_a_locked_sqlite_file_delays_neither_help_nor_texts(chat):
    """Another process holds SQLite's write lock (5 s busy timeout, 3 tries: 16 s)."""
    seconds = {}

    async def scenario():
        core = chat.core(db_wait_s=1.0)
        assert (await core.handle(req("/tiny the"))).rate_generation is not None  # warm
        locker = sqlite3.connect(make_url(chat.url).database, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        try:
            help_reply, seconds["help"] = await timed(core, "/help")
            text, seconds["text"] = await timed(core, "/tiny the cat")
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert help_reply.text.startswith("I write text in the style")
        assert text.text.startswith("the cat")
        await core.handle(req("/tiny again"))
    chat.run(scenario)
    assert seconds["help"] < 0.5 and seconds["text"] < 1.0 + 1.5, seconds
    assert chat.count(RequestRow) == 4  # every request logged once the lock was gone


@pytest.fixture
def pg_schema():
    """A fresh migrated schema in the local PostgreSQL: (user@host URL, schema)."""
    admin = create_engine(PG_URL, connect_args={"connect_timeout": 3})
    schema = f"bot_{uuid.uuid4().hex[:8]}"
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # no server here: skip, saying why
        admin.dispose()
        pytest.skip(f"no PostgreSQL at {PG_URL}: {str(exc).splitlines()[0][:100]}")
    upgrade(f"{PG_URL}?options=-csearch_path%3D{schema}")
    yield schema
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def test_a_postgresql_outage_answers_every_text_and_loses_no_row(chat, pg_schema):
    proxy = Proxy(("127.0.0.1", 5432)).up()
    url = (f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/test"
           f"?options=-csearch_path%3D{pg_schema}")
    primes = [f"the {i}" for i in range(10)]
    primes[4] = "the \udcff cat"  # what the console makes of an undecodable byte

    async def scenario():
        core = chat.core(db_wait_s=1.0)
        core.db.close()
        core.db = Database(url, spool=chat.spool)
        assert (await core.handle(req("/tiny the"))).rate_generation is not None  # warm
        proxy.down()
        for prime in primes:
            reply, took = await timed(core, "/tiny " + prime)
            assert reply.text.startswith("the"), reply.text[:80]  # a text, not "Sorry"
            assert took < 2.5, took
        help_reply, took = await timed(core, "/help")
        assert help_reply.text.startswith("I write text") and took < 0.5, took
        proxy.up()
        back = await core.handle(req("/tiny back"))  # stored, and replays the spool
        assert back.rate_generation is not None
    try:
        chat.run(scenario)
    finally:
        proxy.down()
    engine = create_engine(f"{PG_URL}?options=-csearch_path%3D{pg_schema}")
    try:
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(RequestRow)).scalar_one() \
                == 1 + len(primes) + 1 + 1
            stored = set(conn.execute(select(RequestRow.prime)).scalars())
    finally:
        engine.dispose()
    assert "the \ufffd cat" in stored  # the surrogate's row arrived, made storable
