"""The Discord adapter end to end: the real discord.py and the real Core (tiny model,
migrated SQLite file) against the fake Discord gateway + REST API on 127.0.0.1.

    .venv/bin/python -m pytest tests/bot/test_discord.py -q
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

import discord
import pytest
from fakediscord import ADMIN_ROLE_ID, GUILD_ID, REFUSED_TOKEN, FakeDiscord, user
from fakediscord.payloads import ID_NAMED_ROLE_ID, OTHER_ADMINS_ROLE_ID, OTHER_GUILD_ID
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from bot.adapters.discord import DiscordAdapter, load_discord_settings, serve
from bot.core import Core, Reply
from genmodels.registry import activate
from storage.__main__ import upgrade
from storage.database import Database
from storage.models import Rating, User

ALICE = user(1001, "alice")  # an admin by role only (see ADMINS)
BOB = user(1002, "bob")      # nobody special
ADMINS = """
[admins]
discord_roles = ["ROLE"]
discord_guilds = [GUILD]

[rate_limit]
burst = 50
per_minute = 600

[discord]
message_content = {content}
prefixes = ["!"]
""".replace("ROLE", str(ADMIN_ROLE_ID)).replace("GUILD", str(GUILD_ID))
DISCORD_ROLES = (ADMIN_ROLE_ID,)


class World:
    """A tiny bot (config, model in a registry, migrated SQLite) and its fake Discord."""

    def __init__(self, setup, db_url: str, monkeypatch):
        self.setup, self.db_url, self.monkeypatch = setup, db_url, monkeypatch

    @contextlib.asynccontextmanager
    async def running(self):
        """Yield self with ``fake``, ``core`` and a connected ``adapter``; all closed after."""
        self.fake = await FakeDiscord().start()
        self.fake.patch(self.monkeypatch)
        self.core, self.adapter = self._core(), None
        try:
            await self.start_client()
            yield self
        finally:
            if self.adapter is not None:
                await self.adapter.close()
            await self.core.close()
            await self.fake.close()

    def _core(self) -> Core:
        # the generation client config.toml asks for: the in-process batching engine
        return Core.from_config(self.setup.config, db=Database(self.db_url, spool=None))

    async def start_client(self) -> DiscordAdapter:
        """A new adapter connected to the fake Discord (closing the old one)."""
        if self.adapter is not None:
            await self.adapter.close()
        self.adapter = DiscordAdapter(self.core, load_discord_settings(self.setup.config))
        await self.adapter.start("test-token")
        await self.fake.wait_ready(self.fake.identified + 1)
        return self.adapter

    async def restart(self) -> None:
        """As a new process would: a new core and a new client, nothing kept in memory."""
        await self.adapter.close()
        self.adapter = None
        await self.core.close()
        self.core = self._core()
        await self.start_client()

    async def reply(self, token: str, count: int = 1) -> list[dict]:
        """The first ``count`` messages sent in answer to one interaction."""
        messages = await self.fake.wait_for(
            lambda: len(self.fake.messages_for(token)) >= count and self.fake.messages_for(token))
        return messages[:count]

    def ratings(self) -> list[tuple[int, str, int]]:
        """(generation id, Discord user id, value) for every rating row."""
        engine = create_engine(self.db_url)
        try:
            with Session(engine) as session:
                rows = session.execute(select(Rating.generation_id, User.external_id,
                                              Rating.value).join(User)).all()
        finally:
            engine.dispose()
        return [tuple(r) for r in rows]


@pytest.fixture
def world(tmp_path, make_bot, monkeypatch):
    def build(message_content: bool = False) -> World:
        setup = make_bot(tmp_path / "bot",
                         edit=lambda toml: toml + ADMINS.format(
                             content=str(message_content).lower()))
        art = setup.save_artifact("tiny")
        registry = tmp_path / "registry"
        monkeypatch.setenv("MODEL_REGISTRY", str(registry))
        art.save(registry / "tiny" / art.version)
        activate("tiny", art.version)
        url = f"sqlite:///{tmp_path / 'bot.db'}"
        upgrade(url)
        return World(setup, url, monkeypatch)
    return build


def run(coro):
    return asyncio.run(coro)


def buttons(message: dict) -> dict[str, str]:
    """label -> custom_id of the buttons under a message."""
    return {c["label"]: c["custom_id"] for row in message["components"]
            for c in row["components"]}


def callback_types(fake: FakeDiscord, token: str) -> list[int]:
    return [c.body["type"] for c in fake.calls_for(token) if c.path.startswith("/interactions")]


def test_slash_command_reply_buttons_and_rating(world):
    async def scenario(w: World):
        fake = w.fake
        assert {"tiny", "fable", "help", "temperature", "stats"} <= set(fake.command_names())
        assert "rate" not in fake.command_names()  # console only
        fable = next(c for c in fake.commands if c["name"] == "fable")
        variant = next(o for o in fable["options"] if o["name"] == "variant")
        assert [c["value"] for c in variant["choices"]] == ["fox", "owl"]

        token = await fake.slash("tiny", {"text": "the cat"}, author=BOB)
        (message,) = await w.reply(token)
        assert callback_types(fake, token) == [5]  # deferred first: "bot is thinking"
        assert message["content"].startswith("the cat")
        thumbs = buttons(message)
        assert len(thumbs) == 2
        up, down = thumbs["\N{THUMBS UP SIGN}"], thumbs["\N{THUMBS DOWN SIGN}"]
        generation = int(up.split(":")[1])

        press = await fake.press(message, up, author=BOB)
        (ack,) = await w.reply(press)
        assert ack["content"] == "Thanks for the \N{THUMBS UP SIGN}!"
        assert ack["flags"] & 64  # ephemeral: only the rater sees it
        assert w.ratings() == [(generation, "1002", 1)]

        press = await fake.press(message, down, author=BOB)  # a second press changes it
        (ack,) = await w.reply(press)
        assert ack["content"] == "Changed to \N{THUMBS DOWN SIGN}."
        assert w.ratings() == [(generation, "1002", -1)]

    async def main():
        async with world().running() as w:
            await scenario(w)
    run(main())


def test_button_press_after_a_restart_still_rates(world):
    async def main():
        async with world().running() as w:
            token = await w.fake.slash("fable", {"variant": "fox"}, author=BOB)
            (message,) = await w.reply(token)
            assert "Sorry" in message["content"]  # no fox model: a clear reply, no buttons
            token = await w.fake.slash("tiny", {}, author=BOB)
            (message,) = await w.reply(token)
            up = buttons(message)["\N{THUMBS UP SIGN}"]

            await w.restart()  # a new process: the old view objects are gone
            press = await w.fake.press(message, up, author=ALICE)
            (ack,) = await w.reply(press)
            assert ack["content"] == "Thanks for the \N{THUMBS UP SIGN}!"
            assert w.ratings() == [(int(up.split(":")[1]), "1001", 1)]
    run(main())


def test_tampered_button_is_refused_politely(world):
    async def main():
        async with world().running() as w:
            token = await w.fake.slash("tiny", {}, author=BOB)
            (message,) = await w.reply(token)
            for custom_id in ("rate:999999:+1", "rate:1:+7", "rate:1:+1;drop"):
                # a client that rewrote the button's data (Discord sends only ids of
                # buttons that are on the message, so the message carries it too)
                row = {"type": 1, "components": [{"type": 2, "style": 2, "label": "x",
                                                  "custom_id": custom_id}]}
                forged = dict(message, components=[row])
                press = await w.fake.press(forged, custom_id, author=BOB)
                (ack,) = await w.reply(press)
                assert ack["content"].startswith("Sorry"), ack["content"]
            assert w.ratings() == []
    run(main())


def test_admin_command_needs_the_admin_role(world):
    async def main():
        async with world().running() as w:
            token = await w.fake.slash("temperature", {"text": "tiny 0.9"}, author=BOB)
            (refused,) = await w.reply(token)
            assert refused["content"].startswith("Sorry")
            assert "admin" in refused["content"]
            assert not refused["components"]  # no rating buttons on a refusal
            token = await w.fake.slash("stats", {}, author=BOB)
            (refused,) = await w.reply(token)
            assert refused["content"].startswith("Sorry, /stats is for the bot's admin")

            token = await w.fake.slash("temperature", {"text": "tiny 0.9"}, author=ALICE,
                                       roles=DISCORD_ROLES)
            (done,) = await w.reply(token)
            assert "0.9" in done["content"] and "Sorry" not in done["content"]
    run(main())


def test_admin_roles_count_by_id_and_only_in_the_configured_server(world):
    """[admins] lists role id ADMIN_ROLE_ID in server GUILD_ID. Neither a role named
    like that id nor a role named "admins" in another server makes anyone an admin."""
    cases = [(GUILD_ID, ADMIN_ROLE_ID, True),
             (GUILD_ID, ID_NAMED_ROLE_ID, False),  # its name is str(ADMIN_ROLE_ID)
             (OTHER_GUILD_ID, OTHER_ADMINS_ROLE_ID, False)]  # named "admins", elsewhere

    async def main():
        async with world().running() as w:
            for guild, role, admin in cases:
                token = await w.fake.slash("stats", {}, author=BOB, roles=(role,),
                                           guild_id=guild)
                (reply,) = await w.reply(token)
                refused = reply["content"].startswith("Sorry, /stats is for the bot's admin")
                assert refused != admin, (guild, role, reply["content"][:80])
    run(main())


def test_an_exception_gives_a_short_reply_and_the_bot_goes_on(world, caplog):
    async def main():
        async with world().running() as w:
            real = w.core.handle

            async def broken(request):
                raise RuntimeError("the core blew up")
            w.core.handle = broken
            token = await w.fake.slash("tiny", {"text": "the"}, author=BOB)
            (sorry,) = await w.reply(token)
            assert sorry["content"].startswith("Sorry, something went wrong")
            assert "Traceback" not in sorry["content"] and "blew up" not in sorry["content"]

            w.core.handle = real
            token = await w.fake.slash("gone", {}, author=BOB, synced=False)
            (sorry,) = await w.reply(token)  # answered at once, only to the one who asked
            assert callback_types(w.fake, token) == [4] and sorry["flags"] & 64
            assert sorry["content"].startswith("Sorry, something went wrong")
            token = await w.fake.slash("tiny", {"text": "the"}, author=BOB)
            (message,) = await w.reply(token)
            assert message["content"].startswith("the") and message["components"]
    with caplog.at_level(logging.ERROR, logger="bot.adapters.discord"):
        run(main())
    assert any("the core blew up" in (r.exc_text or "") for r in caplog.records)


def test_prefix_commands_with_message_content(world):
    async def main():
        async with world(message_content=True).running() as w:
            assert w.fake.identify["intents"] & (1 << 15)  # MESSAGE_CONTENT asked for
            await w.fake.say("!tiny the cat", author=BOB)
            await w.fake.say("just chatting", author=BOB)  # no prefix: ignored
            messages = await w.fake.wait_for(w.fake.channel_messages)
            assert messages[0]["content"].startswith("the cat")
            assert len(buttons(messages[0])) == 2
            for ignored in ("!tiny@otherbot the", "!!!", "! wow"):  # not for us: silence
                await w.fake.say(ignored, author=BOB)
            await w.fake.say("!nosuch", author=BOB)
            later = await w.fake.wait_for(lambda: w.fake.channel_messages()[1:])
            assert later[0]["content"].startswith("Sorry, I do not know /nosuch")
            await w.fake.say("!tiny@stylebot the", author=BOB)  # addressed to us
            later = await w.fake.wait_for(lambda: w.fake.channel_messages()[2:])
            assert later[0]["content"].startswith("the")
            assert len(w.fake.channel_messages()) == 3
    run(main())


def test_long_reply_is_split_escaped_with_photo_and_buttons(world):
    """Through the real adapter and fake Discord, with the core's answer stubbed."""
    long_text = ("**Bold** @everyone _claims_ <@1002>.\n" * 60).strip()  # about 2300 chars

    async def main():
        async with world().running() as w:
            async def canned(request):
                if "quiet" in request.text:
                    return Reply("", silent=True)
                return Reply(long_text, rate_generation=7, photo=b"\x89PNG fake")
            w.core.handle = canned
            token = await w.fake.slash("tiny", {"text": "x"}, author=BOB)
            # done when the buttons (on the last chunk) arrived
            await w.fake.wait_for(lambda: any(m["components"]
                                              for m in w.fake.messages_for(token)))
            calls = [c for c in w.fake.calls_for(token) if c.message is not None]
            first, *middle, last = [c.message for c in calls]
            assert all(len(m["content"]) <= 2000 for m in [first, *middle, last])
            assert first["content"].startswith(r"\*\*Bold\*\* @everyone \_claims\_")
            assert all(c.body["allowed_mentions"]["parse"] == [] for c in calls)
            assert list(calls[0].files.values()) == [b"\x89PNG fake"]
            assert not any(c.files or c.message["components"] for c in calls[1:-1])
            assert set(buttons(last).values()) == {"rate:7:+1", "rate:7:-1"}
            text = "\n".join(m["content"] for m in [first, *middle, last])
            assert text.replace("\\", "") == long_text  # nothing lost at the cuts

            token = await w.fake.slash("tiny", {"text": "quiet"}, author=BOB)
            await w.fake.wait_for(lambda: any(c.method == "DELETE"
                                              for c in w.fake.calls_for(token)))
            assert w.fake.messages_for(token) == []  # the "thinking" note is removed
    run(main())


def test_serve_runs_until_stopped_and_a_refused_token_raises(world):
    """``serve`` is what ``python -m bot`` runs for Discord."""
    async def main():
        async with world().running() as w:
            await w.adapter.close()
            w.adapter = None
            stop = asyncio.Event()
            task = asyncio.create_task(serve(w.core, "test-token", stop))
            await w.fake.wait_ready(2)
            token = await w.fake.slash("help", {}, author=BOB)
            (message,) = await w.reply(token)
            assert "/tiny" in message["content"]
            stop.set()
            await asyncio.wait_for(task, 30)  # returns cleanly, no exception

            with pytest.raises(discord.LoginFailure):
                await asyncio.wait_for(serve(w.core, REFUSED_TOKEN, asyncio.Event()), 30)
    run(main())


def test_admins_get_a_direct_message_when_a_training_run_finishes(world, caplog):
    import dataclasses

    from runs import PROMOTED, finished_run

    from bot.adapters.discord import plain_chunks
    from bot.notices import RunWatcher

    async def main():
        async with world().running() as w:
            core = w.core
            # "0x" is no Discord id: that send fails, is logged, and the admin still hears.
            core.settings = dataclasses.replace(core.settings, admins={
                **core.settings.admins, "discord": frozenset({"0x", "1003"})})
            watcher = RunWatcher()
            await core.db.run(watcher.start)
            await core.db.run(finished_run)
            for message in await core.db.run(watcher.poll):
                await core.notify_admins(message)
            (dm,) = w.fake.dms_to(1003)
            assert dm["content"] == plain_chunks(PROMOTED)[0]
            assert [c.body for c in w.fake.calls if c.path == "/users/@me/channels"] == [
                {"recipient_id": 1003}]
        assert core.notifiers == []  # unregistered when the adapter closed
    run(main())
    assert "notice to admin 0x not sent" in caplog.text
