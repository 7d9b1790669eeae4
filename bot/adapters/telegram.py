"""Telegram adapter: python-telegram-bot's ``Application`` translating to the core.

    TELEGRAM_TOKEN=123:abc python -m bot telegram

Long polling by default; ``[telegram] mode = "webhook"`` in config.toml receives updates
on ``listen:port`` instead (served with aiohttp, already installed with discord.py, so
PTB's tornado extra is not needed) after registering ``webhook_url`` with Telegram;
``TELEGRAM_WEBHOOK_SECRET`` in the environment, if set, must accompany every update.
At start the command list is registered (setMyCommands). Replies are plain text (no
parse mode: generated text never turns into Markdown), split at 4096 characters; the
last part of a generated text carries thumbs up / down buttons; "typing" shows while
the model writes. Edited messages and other bots' commands are ignored (the platform
convention); any exception is logged once and answered with a short apology.
Admin notices (``Core.notify_admins``) go to each Telegram admin's private chat, whose
id is the user id (it works once the admin has started a chat with the bot).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re

from telegram import (BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Update)
from telegram.constants import ChatAction
from telegram.ext import (Application, ApplicationBuilder, CallbackQueryHandler,
                          ContextTypes, MessageHandler, filters)

from bot.core import SORRY, Core, Reply, Request, rating_buttons, split_message

log = logging.getLogger(__name__)
MESSAGE_LIMIT = 4096  # Telegram's limit for one text message
CAPTION_LIMIT = 1024  # and for a photo's caption
TYPING_EVERY_S = 4.0  # Telegram shows "typing" for about 5 s per action
CONCURRENT_UPDATES = 256  # PTB handles updates one at a time unless told otherwise
COMMAND_NAME = re.compile(r"^[a-z0-9_]{1,32}$")  # Telegram's rule for menu commands


def build_application(core: Core, token: str, base_url: str | None = None) -> Application:
    """The ``Application`` with every handler; ``base_url`` points at a fake server in tests."""
    builder = ApplicationBuilder().token(token).concurrent_updates(CONCURRENT_UPDATES)
    if base_url:
        builder = builder.base_url(base_url).base_file_url(base_url.rstrip("/") + "/file")
    app = builder.build()
    app.bot_data["core"] = core
    # Commands in any chat; plain text only in private chats (help), never edits.
    wanted = filters.UpdateType.MESSAGE & filters.TEXT & (
        filters.COMMAND | filters.ChatType.PRIVATE)
    app.add_handler(MessageHandler(wanted, on_message))
    app.add_handler(CallbackQueryHandler(on_button))
    app.add_error_handler(on_error)
    return app


def to_request(update: Update, bot_username: str) -> Request:
    msg, user, chat = update.effective_message, update.effective_user, update.effective_chat
    # An anonymous group admin posts as the group: its chat id stands in for the user.
    user_id = str(user.id) if user else str(getattr(msg.sender_chat, "id", chat.id))
    name = (user.username or user.full_name) if user else ""
    title = chat.title or chat.username or chat.full_name or ""
    return Request("telegram", str(chat.id), user_id, user_name=name or "",
                   chat_name=title, text=msg.text or "", bot_username=bot_username)


def keyboard(generation_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data)
                                  for label, data in rating_buttons(generation_id)]])


async def send_reply(bot, chat_id: int | str, reply: Reply) -> None:
    """Send a core reply: a photo with caption, then the text in parts, buttons last."""
    if reply.silent:
        return
    markup = keyboard(reply.rate_generation) if reply.rate_generation is not None else None
    text = reply.text
    if reply.photo is not None:
        caption = text if len(text) <= CAPTION_LIMIT else ""
        await bot.send_photo(chat_id, reply.photo, caption=caption or None,
                             reply_markup=markup if caption or not text else None)
        if caption or not text:
            return
    parts = message_parts(text) or ["(nothing)"]
    for i, part in enumerate(parts):
        await bot.send_message(chat_id, part,
                               reply_markup=markup if i == len(parts) - 1 else None)


async def _keep_typing(bot, chat_id: int) -> None:
    with contextlib.suppress(Exception):  # a lost "typing" must never fail a reply
        while True:
            await bot.send_chat_action(chat_id, ChatAction.TYPING)
            await asyncio.sleep(TYPING_EVERY_S)


async def on_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A command (or a private text) -> the core -> the reply."""
    core: Core = context.bot_data["core"]
    request = to_request(update, context.bot.username or "")
    chat_id = update.effective_chat.id
    typing = asyncio.create_task(_keep_typing(context.bot, chat_id))
    try:
        reply = await core.handle(request)
    finally:
        typing.cancel()
    await send_reply(context.bot, chat_id, reply)


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A rating button: store it, acknowledge with a short notice."""
    core: Core = context.bot_data["core"]
    query = update.callback_query
    chat = update.effective_chat
    user = query.from_user
    request = Request("telegram", str(chat.id if chat else user.id), str(user.id),
                      user_name=user.username or user.full_name or "")
    ack = await core.rate(request, query.data or "")
    await query.answer(ack)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The one error handler: log the exception, answer briefly if there is a chat."""
    log.error("telegram update failed: %r", context.error, exc_info=context.error)
    if isinstance(update, Update):
        with contextlib.suppress(Exception):
            if update.callback_query is not None:
                await update.callback_query.answer(SORRY)
            elif update.effective_chat is not None:
                await context.bot.send_message(update.effective_chat.id, SORRY)


async def register_commands(app: Application, core: Core) -> None:
    # Telegram refuses the whole list if one name breaks its rules; skip such a name.
    menu = [BotCommand(name, desc[:256]) for name, desc in core.commands()
            if COMMAND_NAME.match(name) and desc]
    await app.bot.set_my_commands(menu)


def message_parts(text: str) -> list[str]:
    """Parts within Telegram's limit, which counts UTF-16 units (an emoji is two)."""
    parts = split_message(text, MESSAGE_LIMIT)
    if any(len(p.encode("utf-16-le")) // 2 > MESSAGE_LIMIT for p in parts):
        parts = split_message(text, MESSAGE_LIMIT // 2)
    return parts


def admin_notifier(core: Core, bot):
    """``notify(text)``: the text to every Telegram admin, privately; failures logged."""
    async def notify(text: str) -> None:
        for admin in sorted(core.settings.admin_ids("telegram")):
            try:
                for part in message_parts(text):
                    await bot.send_message(int(admin), part)
            except Exception as exc:  # e.g. the admin never started a chat with the bot
                log.warning("telegram: notice to admin %s not sent: %r", admin, exc)
    return notify


async def serve(core: Core, token: str, stop: asyncio.Event,
                base_url: str | None = None) -> None:
    """Run until ``stop`` is set: polling, or the webhook config.toml asks for."""
    app = build_application(core, token, base_url)
    settings = core.settings
    notify = admin_notifier(core, app.bot)
    async with app:  # initialize (getMe: a bad token fails here) ... shutdown
        await register_commands(app, core)
        await app.start()
        if settings.telegram_mode == "webhook":
            runner = await _start_webhook(app, settings)
        else:
            runner = None
            await app.updater.start_polling(
                allowed_updates=[Update.MESSAGE, Update.CALLBACK_QUERY])
        core.add_notifier(notify)
        try:
            await stop.wait()
        finally:
            core.remove_notifier(notify)
            if runner is not None:
                await runner.cleanup()
            else:
                await app.updater.stop()
            await app.stop()


async def _start_webhook(app: Application, settings):
    """Receive updates over HTTPS (behind a proxy) and queue them for the Application."""
    from aiohttp import web

    secret = os.environ.get("TELEGRAM_WEBHOOK_SECRET") or None

    async def receive(request: web.Request) -> web.Response:
        if secret and request.headers.get("X-Telegram-Bot-Api-Secret-Token") != secret:
            return web.Response(status=403)
        try:
            update = Update.de_json(await request.json(), app.bot)
        except Exception:  # malformed body: say so, never crash the server
            return web.Response(status=400)
        await app.update_queue.put(update)
        return web.Response()

    web_app = web.Application()
    path = "/" + settings.telegram_webhook_url.split("://", 1)[-1].partition("/")[2]
    web_app.router.add_post(path, receive)
    runner = web.AppRunner(web_app)
    await runner.setup()
    await web.TCPSite(runner, settings.telegram_listen, settings.telegram_port).start()
    await app.bot.set_webhook(settings.telegram_webhook_url, secret_token=secret,
                              allowed_updates=[Update.MESSAGE, Update.CALLBACK_QUERY])
    return runner
