"""Telegram adapter: python-telegram-bot's ``Application`` translating to the core.

    TELEGRAM_TOKEN=123:abc python -m bot telegram
    TELEGRAM_API_URL=http://127.0.0.1:8081/bot ...   # a self-hosted Bot API server

Long polling by default, by one process per bot: it holds the poller lock in the
database while it polls (bot/adapters/telegram_polling.py), and a second poller stops
with one line. ``[telegram] mode = "webhook"`` in config.toml receives updates on
``listen:port`` instead (served with aiohttp, already installed with discord.py, so
PTB's tornado extra is not needed) after registering ``webhook_url`` with Telegram;
any number of webhook replicas may run behind a load balancer on one database.
A webhook needs ``TELEGRAM_WEBHOOK_SECRET`` in the environment, which must accompany
every update; only one listening on loopback alone (behind a proxy) may go without it.
At start the command list is registered (setMyCommands). Replies are plain text (no
parse mode: generated text never turns into Markdown), split at 4096 characters; the
last part of a generated text carries thumbs up / down buttons; "typing" shows while
the model writes. In groups a reply answers the command message, in its forum topic.
Edited messages and other bots' commands are ignored (the platform convention); any
exception is logged once and answered with a short apology.

Delivery (bot/adapters/telegram_delivery.py): Telegram's flood limits are kept, 429s
waited out and transient failures retried; a reply that still fails is recorded as
undelivered in its log row. Updates (bot/adapters/telegram_updates.py) are journaled
before Telegram is told they arrived and finished after a crash; repeats are dropped.
Admin notices (``Core.notify_admins``) go to each Telegram admin's private chat, whose
id is the user id (it works once the admin has started a chat with the bot).
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import os
import re

from telegram import BotCommand, Update
from telegram.constants import ChatAction
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

import settings
from bot.adapters.telegram_delivery import (
    CAPTION_LIMIT,
    MESSAGE_LIMIT,
    FloodLimiter,
    Target,
    keyboard,
    message_parts,
    send_reply,
)
from bot.adapters.telegram_polling import PollerLock
from bot.adapters.telegram_updates import (
    JournalingProcessor,
    JournalingQueue,
    UpdateJournal,
    UpdateWindow,
    bot_id_of,
    replay_unfinished,
    share_journal,
)
from bot.core import SORRY, Core, Reply, Request
from genmodels.styles import ConfigError

__all__ = ["serve", "build_application", "check_config", "send_reply", "message_parts",
           "keyboard", "Target", "MESSAGE_LIMIT", "CAPTION_LIMIT"]
log = logging.getLogger(__name__)
TYPING_EVERY_S = 4.0  # Telegram shows "typing" for about 5 s per action
CONCURRENT_UPDATES = 256  # PTB handles updates one at a time unless told otherwise
COMMAND_NAME = re.compile(r"^[a-z0-9_]{1,32}$")  # Telegram's rule for menu commands
SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # Telegram's rule for secret_token
WEBHOOK_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # Telegram sends the secret here
UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]


def build_application(core: Core, token: str, base_url: str | None = None) -> Application:
    """The ``Application`` with every handler; ``base_url`` points at a fake server in tests."""
    journal = UpdateJournal(core.db, bot_id_of(token))
    builder = (ApplicationBuilder().token(token).rate_limiter(FloodLimiter())
               .update_queue(JournalingQueue(UpdateWindow(), journal))
               .concurrent_updates(JournalingProcessor(CONCURRENT_UPDATES, journal)))
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


def check_config(settings, env=os.environ) -> None:
    """``ConfigError`` for a webhook anyone could post forged updates to.

    Without ``TELEGRAM_WEBHOOK_SECRET`` a webhook may only listen on loopback (a proxy
    in front decides who reaches it); ``python -m bot`` calls this before starting.
    """
    if settings.telegram_mode != "webhook":
        return
    secret = env.get("TELEGRAM_WEBHOOK_SECRET", "")
    if secret and not SECRET.match(secret):
        raise ConfigError("TELEGRAM_WEBHOOK_SECRET: 1 to 256 characters of A-Z, a-z, "
                          "0-9, _ and - (Telegram's rule)")
    if not secret and not is_loopback(settings.telegram_listen):
        raise ConfigError(f"telegram.listen = {settings.telegram_listen!r}: a webhook "
                          f"open to the network needs TELEGRAM_WEBHOOK_SECRET in the "
                          f"environment (or listen on 127.0.0.1 behind a proxy)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def to_request(update: Update, bot_username: str) -> Request:
    msg, user, chat = update.effective_message, update.effective_user, update.effective_chat
    if msg is None or chat is None:  # on_message's filters let only messages in chats in
        raise ValueError(f"update {update.update_id} carries no message in a chat")
    # An anonymous group admin (or a channel) posts as a chat, and ``from`` is then a
    # placeholder (GroupAnonymousBot) shared by every such sender: the chat is the user.
    sender = msg.sender_chat
    if sender is not None:
        user_id, name = str(sender.id), sender.title or sender.username or ""
    elif user is not None:
        user_id, name = str(user.id), user.username or user.full_name or ""
    else:
        user_id, name = str(chat.id), ""
    title = chat.title or chat.username or chat.full_name or ""
    return Request("telegram", str(chat.id), user_id, user_name=name,
                   chat_name=title, text=msg.text or "", bot_username=bot_username)


async def _keep_typing(bot, target: Target) -> None:
    with contextlib.suppress(Exception):  # a lost "typing" must never fail a reply
        while True:
            await bot.send_chat_action(target.chat_id, ChatAction.TYPING,
                                       message_thread_id=target.thread_id)
            await asyncio.sleep(TYPING_EVERY_S)


async def on_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A command (or a private text) -> the core -> the reply."""
    core: Core = context.bot_data["core"]
    message = update.effective_message
    if message is None:  # the handler's filters admit messages only
        return
    request = to_request(update, context.bot.username or "")
    target = Target.of(message)
    typing = asyncio.create_task(_keep_typing(context.bot, target))
    try:
        reply = await core.handle(request)
    finally:
        typing.cancel()
    try:
        await send_reply(context.bot, target, reply)
    except TelegramError as exc:  # retries spent (telegram_delivery): say so in the log
        await core.undelivered(reply, f"{type(exc).__name__}: {exc}")
        raise


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A rating button: store it, acknowledge with a short notice."""
    core: Core = context.bot_data["core"]
    query = update.callback_query
    if query is None:  # registered for callback queries only
        return
    chat = update.effective_chat
    user = query.from_user
    request = Request("telegram", str(chat.id if chat else user.id), str(user.id),
                      user_name=user.username or user.full_name or "")
    ack = await core.rate(request, query.data or "")
    await query.answer(ack)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The one error handler: log the exception, answer briefly if there is a chat."""
    log.error("telegram update failed: %r", context.error, exc_info=context.error)
    error = context.error
    if isinstance(error, (RetryAfter, NetworkError)) and not isinstance(error, BadRequest):
        return  # Telegram is flooded or unreachable: an apology would meet the same wall
    if isinstance(update, Update):
        with contextlib.suppress(Exception):
            if update.callback_query is not None:
                await update.callback_query.answer(SORRY)
            elif update.effective_message is not None:
                await send_reply(context.bot, Target.of(update.effective_message),
                                 Reply(SORRY))


async def register_commands(app: Application, core: Core) -> None:
    # Telegram refuses the whole list if one name breaks its rules; skip such a name.
    menu = [BotCommand(name, desc[:256]) for name, desc in core.commands()
            if COMMAND_NAME.match(name) and desc]
    await app.bot.set_my_commands(menu)


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
    """Run until ``stop`` is set: polling, or the webhook config.toml asks for.

    Polling takes the poller lock first (``AnotherPoller`` when another process polls
    for this bot) and stops with ``RuntimeError`` should the lock be lost."""
    check_config(core.settings)
    base_url = base_url or os.environ.get("TELEGRAM_API_URL") or None
    webhook = core.settings.telegram_mode == "webhook"
    lock = None if webhook else PollerLock(core.db.url, bot_id_of(token))
    if lock is not None:
        await lock.acquire()
    try:
        await _run(core, build_application(core, token, base_url), stop, lock)
    finally:
        if lock is not None:
            await lock.release()


async def _run(core: Core, app: Application, stop: asyncio.Event,
               lock: PollerLock | None) -> None:
    notify = admin_notifier(core, app.bot)
    async with app:  # initialize (getMe: a bad token fails here) ... shutdown
        await register_commands(app, core)
        await app.start()
        runner, updater, background = None, app.updater, []
        if lock is None:  # webhook: replicas share the journal (telegram_updates.py)
            takeover_s = settings.load(core.book.path).telegram.takeover_s
            background.append(asyncio.create_task(share_journal(app, takeover_s)))
            runner = await _start_webhook(app, core.settings)
        elif updater is None:  # ApplicationBuilder makes one unless told not to
            raise RuntimeError("the Telegram application has no updater to poll with")
        else:
            await replay_unfinished(app)  # what a crash interrupted, before anything new
            await updater.start_polling(allowed_updates=UPDATES)
            background.append(asyncio.create_task(lock.watch()))
        core.add_notifier(notify)
        try:
            await _until(stop, background)
        finally:
            core.remove_notifier(notify)
            for task in background:
                task.cancel()
            if runner is not None:
                await runner.cleanup()
            elif updater is not None and updater.running:
                await updater.stop()
            await app.stop()


async def _until(stop: asyncio.Event, background: list[asyncio.Task]) -> None:
    """Wait for ``stop``; raise if a background task (the lock's watch) ends first."""
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([stopping, *background], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not stop.is_set():
        ended = next(t for t in background if t.done())
        ended.result()  # its own exception, if it had one
        raise RuntimeError("the Telegram poller lock was lost: polling stopped")


async def _start_webhook(app: Application, settings):
    """Receive updates over HTTPS (behind a proxy) and queue them for the Application."""
    from aiohttp import web

    secret = os.environ.get("TELEGRAM_WEBHOOK_SECRET") or None
    if secret is None:  # check_config allowed it: loopback only
        log.warning("telegram: webhook without TELEGRAM_WEBHOOK_SECRET, accepted because "
                    "it listens on %s (loopback) only", settings.telegram_listen)
    expected = (secret or "").encode()

    async def receive(request: web.Request) -> web.Response:
        given = request.headers.get(WEBHOOK_SECRET_HEADER, "").encode()
        if secret and not hmac.compare_digest(given, expected):  # no timing hints
            return web.Response(status=403)
        try:
            update = Update.de_json(await request.json(), app.bot)
        except Exception:  # malformed body: say so, never crash the server
            return web.Response(status=400)
        await app.update_queue.put(update)  # journaled before Telegram hears 200
        return web.Response()

    web_app = web.Application()
    path = "/" + settings.telegram_webhook_url.split("://", 1)[-1].partition("/")[2]
    web_app.router.add_post(path, receive)
    runner = web.AppRunner(web_app)
    await runner.setup()
    await web.TCPSite(runner, settings.telegram_listen, settings.telegram_port).start()
    await app.bot.set_webhook(settings.telegram_webhook_url, secret_token=secret,
                              allowed_updates=UPDATES)
    return runner
