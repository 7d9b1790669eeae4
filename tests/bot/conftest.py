"""Fixtures for the chat bot tests: a tiny bot setup with a real database and engine.

``chat`` gives a folder with a tiny config.toml (styles tiny, fable fox/owl, empty),
random artifacts for tiny and fable_fox (fable_owl has none: its model is
"unavailable"), a migrated SQLite database, and ``chat.core(**settings)`` which builds a
real ``Core`` (real storage, the real in-process engine with the NumPy backend). Call
``await chat.close()`` (or use ``chat.run``) so threads do not outlive the test.
"""
from __future__ import annotations

import asyncio
import dataclasses

import pytest
from sqlalchemy import create_engine, func, select

from bot.core import Core
from bot.settings import BotSettings
from serving.engine import Engine, EngineClient
from storage.__main__ import upgrade
from storage.database import Database

ADMIN = "1"  # the admin user id on every platform in these tests


class Chat:
    def __init__(self, setup, tmp_path):
        self.setup = setup
        self.book = setup.book()
        self.url = f"sqlite:///{tmp_path / 'bot.db'}"
        self.spool = tmp_path / "spool.jsonl"
        upgrade(self.url)
        self.cores: list[Core] = []

    def core(self, **overrides) -> Core:
        settings = BotSettings(admins={p: frozenset({ADMIN}) for p in
                                       ("console", "telegram", "discord")},
                               rate_burst=1000, rate_per_minute=1000)
        settings = dataclasses.replace(settings, **overrides)
        paths = {name: s.model_dir for name, s in self.book.styles.items()}
        client = EngineClient(Engine(paths=paths, backend="numpy", poll_s=3600))
        core = Core(self.book, Database(self.url, spool=self.spool), client, settings)
        self.cores.append(core)
        return core

    async def close(self) -> None:
        for core in self.cores:
            await core.close()
        self.cores.clear()

    def run(self, scenario) -> None:
        """``asyncio.run(scenario())`` closing every core built, even on failure."""
        async def wrapped():
            try:
                await scenario()
            finally:
                await self.close()
        asyncio.run(wrapped())

    def rows(self, model, *where):
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return conn.execute(select(model).where(*where)).all()
        finally:
            engine.dispose()

    def count(self, model, *where) -> int:
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return conn.execute(select(func.count()).select_from(model)
                                    .where(*where)).scalar_one()
        finally:
            engine.dispose()


@pytest.fixture
def chat(bot, tmp_path) -> Chat:
    bot.save_artifact("tiny")
    bot.save_artifact("fable_fox", seed=1)
    return Chat(bot, tmp_path)
