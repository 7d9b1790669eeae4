"""Sending to Telegram without losing replies: flood limits, retries, topics and replies.

``FloodLimiter`` is python-telegram-bot's ``AIORateLimiter`` (the ``[rate-limiter]``
extra) kept to Telegram's limits: about 30 messages a second overall, 20 a minute per
group, one a second per chat. A 429 answer's ``retry_after`` is waited out, up to
``MAX_RETRIES`` times; a transient failure (a 5xx, a dropped connection, a timeout) is
tried again after ``BACKOFF_S``. What still fails raises, and the caller records the
reply as undelivered. A timed-out send may have arrived: retrying it risks a duplicate
message, which beats a lost one.

``Target`` is where a reply goes: the chat, the forum topic of the command, and in
groups the command message itself, which the first part answers.

    app = ApplicationBuilder().token(token).rate_limiter(FloodLimiter()).build()
    await send_reply(app.bot, Target.of(update.effective_message), reply)
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from aiolimiter import AsyncLimiter
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.constants import ChatType
from telegram.error import BadRequest, NetworkError
from telegram.ext import AIORateLimiter

from bot.core import Reply, rating_buttons, split_message

log = logging.getLogger(__name__)
MESSAGE_LIMIT = 4096  # Telegram's limit for one text message
CAPTION_LIMIT = 1024  # and for a photo's caption
MAX_RETRIES = 3  # 429s waited out per request
BACKOFF_S = (1.0, 3.0, 9.0)  # pauses before retrying a transient failure
PER_CHAT = (1, 1.0)  # one message per second in any one chat
NOT_MESSAGES = frozenset({"sendChatAction"})  # "typing": cheap to lose, never waited for
MAX_CHAT_LIMITERS = 1024


class FloodLimiter(AIORateLimiter):
    """``AIORateLimiter`` plus a limit per chat and retries of transient failures."""

    def __init__(self, max_retries: int | None = None,
                 backoff: tuple[float, ...] | None = None):
        super().__init__(  # defaults: 30/s overall, 20/min per group
            max_retries=MAX_RETRIES if max_retries is None else max_retries)
        self.backoff = BACKOFF_S if backoff is None else tuple(backoff)
        self._chats: dict[Any, AsyncLimiter] = {}

    def _chat_limiter(self, chat_id) -> AsyncLimiter | contextlib.nullcontext:
        if chat_id is None:
            return contextlib.nullcontext()
        if len(self._chats) >= MAX_CHAT_LIMITERS and chat_id not in self._chats:
            # A limiter with full capacity remembers nothing: dropping it loses nothing.
            self._chats = {k: v for k, v in self._chats.items()
                           if not v.has_capacity(v.max_rate)}
        if chat_id not in self._chats:
            self._chats[chat_id] = AsyncLimiter(*PER_CHAT)
        return self._chats[chat_id]

    async def process_request(self, callback, args, kwargs, endpoint, data,
                              rate_limit_args):
        if endpoint in NOT_MESSAGES:
            return await callback(*args, **kwargs)
        pauses = (*self.backoff, None)
        for pause in pauses:
            try:
                async with self._chat_limiter(data.get("chat_id")):
                    return await super().process_request(
                        callback, args, kwargs, endpoint, data, rate_limit_args)
            except BadRequest:  # our request is wrong: sending it again cannot help
                raise
            except NetworkError as exc:  # 5xx, connection lost, timed out
                if pause is None:
                    raise
                log.warning("telegram %s failed (%s); trying again in %.1f s",
                            endpoint, exc, pause)
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class Target:
    """Where a reply goes: a chat, its forum topic, the message it answers."""

    chat_id: int | str
    thread_id: int | None = None  # the forum topic of the command
    reply_to: int | None = None  # in groups: the command message

    @classmethod
    def of(cls, message: Message) -> Target:
        thread = message.message_thread_id if message.is_topic_message else None
        group = message.chat.type != ChatType.PRIVATE
        return cls(message.chat_id, thread, message.message_id if group else None)

    def options(self, first: bool = True) -> dict:
        """Keyword arguments of a send: the topic always, the reply on the first part."""
        options: dict = {}
        if self.thread_id is not None:
            options["message_thread_id"] = self.thread_id
        if first and self.reply_to is not None:
            # The command may have been deleted meanwhile: send the reply anyway.
            options["reply_parameters"] = ReplyParameters(
                self.reply_to, allow_sending_without_reply=True)
        return options


def keyboard(generation_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data)
                                  for label, data in rating_buttons(generation_id)]])


def message_parts(text: str) -> list[str]:
    """Parts within Telegram's limit, which counts UTF-16 units (an emoji is two)."""
    parts = split_message(text, MESSAGE_LIMIT)
    if any(len(p.encode("utf-16-le")) // 2 > MESSAGE_LIMIT for p in parts):
        parts = split_message(text, MESSAGE_LIMIT // 2)
    return parts


async def send_reply(bot, where: Target | int | str, reply: Reply) -> None:
    """Send a core reply: a photo with caption, then the text in parts, buttons last."""
    if reply.silent:
        return
    target = where if isinstance(where, Target) else Target(where)
    markup = keyboard(reply.rate_generation) if reply.rate_generation is not None else None
    text = reply.text
    if reply.photo is not None:
        caption = text if len(text) <= CAPTION_LIMIT else ""
        await bot.send_photo(target.chat_id, reply.photo, caption=caption or None,
                             reply_markup=markup if caption or not text else None,
                             **target.options())
        if caption or not text:
            return
        target = Target(target.chat_id, target.thread_id)  # the photo answered already
    parts = message_parts(text) or ["(nothing)"]
    for i, part in enumerate(parts):
        await bot.send_message(target.chat_id, part,
                               reply_markup=markup if i == len(parts) - 1 else None,
                               **target.options(first=i == 0))
