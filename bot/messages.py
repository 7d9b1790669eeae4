"""What passes between an adapter, the core and the command handlers: ``Request`` in,
``Reply`` out, ``UserError`` for a refusal, ``Context`` for one request being handled.
``bot.core`` re-exports them; adapters import them from there.

    from bot.core import Reply, Request
"""
from __future__ import annotations

from dataclasses import dataclass

from storage.models import Outcome
from storage.records import RequestRecord


@dataclass(frozen=True)
class Request:
    """One message addressed to the bot, as an adapter saw it."""

    platform: str  # "console" | "telegram" | "discord"
    chat_id: str
    user_id: str
    user_name: str = ""
    chat_name: str = ""
    text: str = ""  # whole message, e.g. "/proverb armenian Once upon"; "/austen@mybot x" ok
    roles: tuple[str, ...] = ()  # platform role ids (Discord), for admin-by-role
    bot_username: str = ""  # to ignore commands addressed to another bot (/austen@otherbot)
    guild_id: str = ""  # the server the roles belong to (Discord; "" in direct messages)


@dataclass(frozen=True)
class Reply:
    """What to send back; adapters split ``text`` with ``split_message``."""

    text: str  # plain text, never markup
    rate_generation: int | None = None  # a generation id: attach thumbs up/down buttons
    photo: bytes | None = None  # PNG, sent with ``text`` as caption
    silent: bool = False  # nothing to send (e.g. a command for another bot)
    request_uid: str | None = None  # the log row, for ``Core.undelivered``


class UserError(Exception):
    """A request we refuse; the message is the reply (unless ``silent``), ``outcome`` goes
    to the log."""

    def __init__(self, message: str, outcome: Outcome = Outcome.BAD_INPUT,
                 silent: bool = False):
        super().__init__(message)
        self.outcome, self.silent = outcome, silent


@dataclass
class Context:
    """One request being handled: the parsed command and the record that will be logged."""

    request: Request
    command: str
    args: str
    record: RequestRecord
