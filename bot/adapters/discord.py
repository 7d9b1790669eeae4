"""The Discord adapter: discord.py slash commands (and prefix commands) <-> the core.

    adapter = DiscordAdapter(core, load_discord_settings())   # [discord] in config.toml
    await adapter.start(os.environ["DISCORD_TOKEN"])   # logs in, connects in the background
    ...
    await adapter.close()
    # python -m bot calls:  await serve(core, token, stop_event)

Every command in ``core.commands()`` becomes a slash command with an optional ``text``
option (commands with variants, like /proverb, also get a ``variant`` choice); they are
synced at start. With ``message_content = true`` in [discord] (a privileged intent you
must also enable in the developer portal) "/austen It is" and "!austen It is" typed as
ordinary messages work too. The adapter only translates: every rule lives in the core.

Replies are deferred (the model takes a moment), split at Discord's 2000 characters,
sent with Markdown escaped and no mentions, and carry thumbs up / down buttons. The
buttons are ``RateButton`` dynamic items: their custom_id is the core's rating data, so
a press after a restart still reaches ``core.rate``. Errors are logged and answered
with one short line, never a traceback. Admin notices (``Core.notify_admins``) are
sent as direct messages to the Discord admin user ids of [admins] (admins by role only
are not messaged: a role has no inbox).

Shards across processes: by default one process opens as many shards as Discord
recommends. With ``[discord] shard_count = N`` and ``shard_ids = [...]`` each process
runs only its own shards of the N (process A ``[0, 1]``, process B ``[2, 3]`` of 4);
every shard id must appear in exactly one process. Only the process running shard 0
syncs the slash commands (they are global to the application, once is enough).
"""
from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord
from discord import app_commands

import settings
from bot.core import RATE_PREFIX, SORRY, Core, Reply, Request, rating_buttons, split_message
from settings import ConfigError

log = logging.getLogger(__name__)
LIMIT = 2000  # Discord's message length limit
NO_MENTIONS = discord.AllowedMentions.none()
_NAME_RE = re.compile(r"^[-_a-z0-9]{1,32}$")  # what Discord accepts as a command name
_PREFIXED_RE = re.compile(r"^/\w+(@\w+)?(\s|$)")  # "/austen It is", "/austen@bot"


@dataclass(frozen=True)
class DiscordSettings:
    """The [discord] table of config.toml (the token comes from DISCORD_TOKEN)."""

    message_content: bool = False  # prefix commands; needs the privileged intent
    prefixes: tuple[str, ...] = ("!", "/")
    sync_guild: int = 0  # 0: sync commands globally; a guild id: there, at once
    shard_count: int = 0  # 0: as many shards as Discord recommends
    shard_ids: tuple[int, ...] = ()  # this process's shards of shard_count; (): all

    @property
    def syncs_commands(self) -> bool:
        """Whether this process syncs the slash commands (it runs shard 0)."""
        return not self.shard_ids or 0 in self.shard_ids


def load_discord_settings(path: str | Path | None = None) -> DiscordSettings:
    """[discord] of ``$BOT_CONFIG`` or the repository's config.toml (keys and types
    checked by the ``settings`` package; the values here)."""
    table = settings.load(path).discord
    if not all(table.prefixes):
        raise ConfigError(f"discord.prefixes: expected a list of strings, got "
                          f"{list(table.prefixes)!r}")
    if table.sync_guild < 0:
        raise ConfigError(f"discord.sync_guild: expected a guild id or 0, "
                          f"got {table.sync_guild!r}")
    _check_shards(table.shard_count, table.shard_ids)
    return DiscordSettings(table.message_content, table.prefixes, table.sync_guild,
                           table.shard_count, table.shard_ids)


def _check_shards(count: int, ids: tuple[int, ...]) -> None:
    """``ConfigError`` (one line) unless ``ids`` are distinct shards of ``count``."""
    if count < 0:
        raise ConfigError(f"discord.shard_count: expected 0 (Discord's recommendation) "
                          f"or a number of shards, got {count}")
    if ids and not count:
        raise ConfigError("discord.shard_ids: needs discord.shard_count, the number of "
                          "shards over all processes")
    wrong = [i for i in ids if not 0 <= i < count]
    if wrong:
        raise ConfigError(f"discord.shard_ids: {wrong[0]} is out of range for "
                          f"shard_count = {count} (shard ids go from 0 to {count - 1})")
    if len(set(ids)) != len(ids):
        raise ConfigError(f"discord.shard_ids: {list(ids)} names a shard twice")


def plain_chunks(text: str, limit: int = LIMIT) -> list[str]:
    """``text`` with Markdown escaped, in chunks of at most ``limit`` characters.

    Split first and escape each chunk, so an escape is never cut in two and a chunk's
    first line is escaped as a line start; a chunk that escaping made too long is split
    again, smaller.
    """
    return [chunk for piece in split_message(text, limit) for chunk in _fit(piece, limit)]


def _fit(piece: str, limit: int) -> list[str]:
    escaped = discord.utils.escape_markdown(piece)
    if len(escaped) <= limit:
        return [escaped]
    size = max(1, len(piece) * limit // len(escaped))  # the raw length that should fit
    return [chunk for part in split_message(piece, size) for chunk in _fit(part, limit)]


class RateButton(discord.ui.DynamicItem[discord.ui.Button],
                 template=rf"(?P<data>{re.escape(RATE_PREFIX)}:[^\s]{{1,90}})"):
    """A thumbs button whose custom_id is the core's rating data (survives restarts)."""

    def __init__(self, data: str, label: str = "") -> None:
        super().__init__(discord.ui.Button(label=label or None, custom_id=data,
                                           style=discord.ButtonStyle.secondary))
        self.data = data

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item,
                             match: re.Match[str]) -> RateButton:
        return cls(match["data"], getattr(item, "label", "") or "")

    async def callback(self, interaction: discord.Interaction) -> None:
        adapter: DiscordAdapter = interaction.client.adapter  # type: ignore[attr-defined]
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
            ack = await adapter.core.rate(adapter.request(interaction), self.data)
            await interaction.followup.send(ack, ephemeral=True, allowed_mentions=NO_MENTIONS)
        except Exception as exc:  # dynamic items have no error hook of their own
            await adapter.on_interaction_error(interaction, exc)


def rating_view(generation_id: int) -> discord.ui.View:
    """Thumbs up / down for one generation; timeout=None so it never expires."""
    view = discord.ui.View(timeout=None)
    for label, data in rating_buttons(generation_id):
        view.add_item(RateButton(data, label))
    return view


class _Client(discord.AutoShardedClient):
    """The client, knowing its adapter (buttons find the core through it).

    AutoSharded: Discord refuses a single connection (close code 4011) once a bot is in
    2,500 servers; this one opens as many shards as Discord recommends (one for a
    small bot), so growing past that needs no change; or, with [discord] shard_count
    and shard_ids, only this process's share of a fixed number of shards.
    """

    def __init__(self, adapter: DiscordAdapter, intents: discord.Intents) -> None:
        shards: dict[str, Any] = {}
        if adapter.settings.shard_count:
            shards["shard_count"] = adapter.settings.shard_count
        if adapter.settings.shard_ids:
            shards["shard_ids"] = list(adapter.settings.shard_ids)
        super().__init__(intents=intents, allowed_mentions=NO_MENTIONS, **shards)
        self.adapter = adapter
        self.tree = app_commands.CommandTree(self)
        self.tree.error(adapter.on_tree_error)  # discord.py's way to set tree.on_error

    async def setup_hook(self) -> None:
        await self.adapter.setup()

    async def on_message(self, message: discord.Message) -> None:
        await self.adapter.on_message(message)


class DiscordAdapter:
    """One Discord bot in the shared event loop: ``start(token)`` / ``close()``."""

    def __init__(self, core: Core, settings: DiscordSettings | None = None) -> None:
        self.core = core
        self.settings = settings or DiscordSettings()
        intents = discord.Intents.default()
        intents.message_content = self.settings.message_content
        self.client = _Client(self, intents)
        self.task: asyncio.Task | None = None  # the gateway connection, once started

    # ------------------------------------------------------------------ lifecycle

    async def start(self, token: str) -> asyncio.Task:
        """Log in (raises ``discord.LoginFailure`` for a bad token), then connect; the
        connection's task (also ``self.task``)."""
        await self.client.login(token)
        self.task = task = asyncio.create_task(self.client.connect(), name="discord-gateway")
        self.core.add_notifier(self.notify)
        return task

    async def notify(self, text: str) -> None:
        """A direct message with ``text`` to every admin user id; failures logged."""
        for admin in sorted(self.core.settings.admin_ids("discord")):
            try:
                user = await self.client.fetch_user(int(admin))
                for chunk in plain_chunks(text):
                    await user.send(chunk, allowed_mentions=NO_MENTIONS)
            except Exception as exc:  # e.g. DMs closed, or no such user
                log.warning("discord: notice to admin %s not sent: %r", admin, exc)

    async def close(self) -> None:
        self.core.remove_notifier(self.notify)
        await self.client.close()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)

    async def setup(self) -> None:
        """Register the buttons and the slash commands, then sync them to Discord
        (from the process running shard 0 only)."""
        self.client.add_dynamic_items(RateButton)
        for command in self.slash_commands():
            self.client.tree.add_command(command)
        if not self.settings.syncs_commands:
            return
        guild = discord.Object(self.settings.sync_guild) if self.settings.sync_guild else None
        if guild is not None:
            self.client.tree.copy_global_to(guild=guild)
        synced = await self.client.tree.sync(guild=guild)
        log.info("discord: %d slash commands synced %s", len(synced),
                 f"to guild {guild.id}" if guild else "globally")

    # ------------------------------------------------------------------ commands

    def slash_commands(self) -> list[app_commands.Command]:
        """One slash command per core command (names Discord refuses are skipped)."""
        variants: dict[str, list[str]] = {}
        for style in self.core.book.styles.values():
            if style.variant:
                variants.setdefault(style.command, []).append(style.variant)
        styles = {s.command for s in self.core.book.styles.values()}
        made = []
        for name, description in self.core.commands():
            if not _NAME_RE.match(name):
                log.warning("discord: /%s is not a valid slash command name; skipped", name)
                continue
            made.append(self._command(name, description[:100] or name,
                                      sorted(variants.get(name, [])), name in styles))
        return made

    def _command(self, name: str, description: str, variants: list[str],
                 style: bool) -> app_commands.Command:
        text_help = "Text to start from" if style else "Arguments, if the command takes any"
        callback: Callable[..., Coroutine[Any, Any, None]]
        if variants:
            async def run_variant(interaction: discord.Interaction,
                                  variant: str | None = None, text: str | None = None):
                await self.answer(interaction, " ".join(filter(None, (name, variant, text))))
            callback = app_commands.choices(variant=[app_commands.Choice(name=v, value=v)
                                                     for v in variants[:25]])(run_variant)
            callback = app_commands.describe(variant="Which one (optional)",
                                             text=text_help)(callback)
        else:
            async def run(interaction: discord.Interaction, text: str | None = None):
                await self.answer(interaction, f"{name} {text}" if text else name)
            callback = app_commands.describe(text=text_help)(run)
        return app_commands.Command(name=name, description=description, callback=callback)

    # ------------------------------------------------------------------ translating

    def request(self, source: discord.Interaction | discord.Message, text: str = "") -> Request:
        """The core's view of who asked where; role ids and the server (admin-by-role)."""
        if isinstance(source, discord.Interaction):
            user, chat_id = source.user, source.channel_id or source.guild_id or 0
        else:
            user, chat_id = source.author, source.channel.id
        channel = source.channel
        roles: tuple[str, ...] = ()
        if isinstance(user, discord.Member):
            roles = tuple(str(r.id) for r in user.roles if not r.is_default())
        where = getattr(channel, "name", None) or "direct messages"
        if source.guild is not None:
            where = f"{source.guild.name} #{where}"
        me = self.client.user
        guild = getattr(source, "guild_id", None) or getattr(source.guild, "id", "")
        return Request("discord", str(chat_id), str(user.id), user.name, where, text, roles,
                       me.name if me else "", guild_id=str(guild or ""))

    async def answer(self, interaction: discord.Interaction, text: str) -> None:
        """Defer, ask the core, send the reply as followups."""
        await interaction.response.defer(thinking=True)
        reply = await self.core.handle(self.request(interaction, "/" + text))
        if reply.silent or not (reply.text or reply.photo):
            await interaction.delete_original_response()
            return
        for kwargs in _messages(reply):
            await interaction.followup.send(**kwargs)

    async def on_message(self, message: discord.Message) -> None:
        """Prefix commands ("/austen ...", "!austen ...") when message content is on."""
        if message.author.bot or not self.settings.message_content:
            return
        prefix = next((p for p in self.settings.prefixes if message.content.startswith(p)), "")
        text = "/" + message.content[len(prefix):]
        if not prefix or not _PREFIXED_RE.match(text):  # "!!!" or "! wow" is no command
            return
        try:
            async with message.channel.typing():
                reply = await self.core.handle(self.request(message, text))
            if reply.silent:
                return
            for kwargs in _messages(reply):
                await message.channel.send(**kwargs)
        except Exception:
            log.exception("discord: prefix command %r failed", message.content[:80])
            await _quietly(message.channel.send(SORRY, allowed_mentions=NO_MENTIONS))

    # ------------------------------------------------------------------ errors

    async def on_tree_error(self, interaction: discord.Interaction,
                            error: app_commands.AppCommandError) -> None:
        """The error handler for slash commands: log it, answer one short line."""
        await self.on_interaction_error(interaction, getattr(error, "original", error))

    async def on_interaction_error(self, interaction: discord.Interaction,
                                   error: BaseException) -> None:
        log.error("discord: %s failed", _describe(interaction), exc_info=error)
        send: Coroutine[Any, Any, object]
        if interaction.response.is_done():
            send = interaction.followup.send(SORRY, ephemeral=True,
                                             allowed_mentions=NO_MENTIONS)
        else:
            send = interaction.response.send_message(SORRY, ephemeral=True,
                                                     allowed_mentions=NO_MENTIONS)
        await _quietly(send)


def _messages(reply: Reply) -> list[dict[str, Any]]:
    """send() keyword arguments: the photo on the first message, buttons on the last."""
    messages: list[dict[str, Any]] = [{"content": chunk, "allowed_mentions": NO_MENTIONS}
                                      for chunk in plain_chunks(reply.text)]
    if reply.photo is not None:
        if not messages:
            messages.append({"allowed_mentions": NO_MENTIONS})
        messages[0]["file"] = discord.File(io.BytesIO(reply.photo), filename="image.png")
    if reply.rate_generation is not None and messages:
        messages[-1]["view"] = rating_view(reply.rate_generation)
    return messages


def _describe(interaction: discord.Interaction) -> str:
    command = interaction.command.name if interaction.command else "interaction"
    return f"/{command} by user {interaction.user.id}"


async def _quietly(coro) -> None:
    """Send an error notice; if even that fails (e.g. Discord is down), just log it."""
    try:
        await coro
    except Exception:
        log.exception("discord: could not send the error notice")


async def serve(core: Core, token: str, stop: asyncio.Event,
                settings: DiscordSettings | None = None) -> None:
    """``python -m bot``'s entry point: run until ``stop`` is set, then close cleanly.

    Raises ``discord.LoginFailure`` for a refused token, and whatever ends the gateway
    connection for good (e.g. ``PrivilegedIntentsRequired`` when message_content is on
    here but not in the developer portal). Settings default to [discord] of the
    config.toml the core was built from.
    """
    adapter = DiscordAdapter(core, settings or load_discord_settings(core.book.path))
    try:
        task = await adapter.start(token)
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if task.done():
            task.result()  # the connection ended on its own: say why
    finally:
        await adapter.close()

