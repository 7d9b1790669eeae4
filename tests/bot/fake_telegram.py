"""A fake Telegram Bot API server on 127.0.0.1 for the real python-telegram-bot library.

It serves ``/bot<TOKEN>/<method>``: getUpdates returns the updates a test queued
(long-polling like Telegram: it waits for one, briefly; an update stays until a later
call's ``offset`` confirms it); sendMessage, sendPhoto, sendChatAction,
answerCallbackQuery, editMessageReplyMarkup, setMyCommands, deleteWebhook, getMe and
the rest are recorded in ``calls`` and answered the way Telegram answers them. Used by
tests/bot/test_telegram*.py and bench/chat.py.

Failures as Telegram sends them (https://core.telegram.org/bots/api#making-requests):
``fail(method, 429, retry_after=1)`` answers "Too Many Requests" with
``parameters.retry_after``, ``fail(method, 502)`` a gateway error; ``hold(method)``
leaves calls unanswered (a request lost on the way: not delivered, not recorded).

Replicas of one bot can tell themselves apart: a client whose base URL is
``replica_url("r1")`` calls ``/r1/bot<TOKEN>/<method>``, its calls carry
``replica == "r1"``, and ``hold(method, replica="r1")`` holds only that replica's calls.

    server = FakeTelegram()
    await server.start()                       # server.base_url -> ApplicationBuilder
    server.message(chat_id=1, user_id=7, text="/austen")
    call = await server.wait_for("sendMessage", lambda p: p["chat_id"] == 1)
    await server.stop()
"""
from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

TOKEN = "123456:TEST-token"
BOT_USER = {"id": 123456, "is_bot": True, "first_name": "Style", "username": "stylebot_test",
            "can_join_groups": True, "can_read_all_group_messages": False,
            "supports_inline_queries": False}
MAX_POLL_WAIT_S = 0.5  # shorter than Telegram's, so the library stops quickly in tests
# Telegram's placeholder sender of an anonymous group admin's messages.
ANONYMOUS_ADMIN = {"id": 1087968824, "is_bot": True, "first_name": "Group",
                   "username": "GroupAnonymousBot"}


@dataclass
class Call:
    method: str
    params: dict
    at: float = field(default_factory=time.perf_counter)
    replica: str = ""  # the base URL's prefix (see replica_url)


def _decode(value: str):
    """PTB sends each parameter as a form field, JSON-encoded unless it is a plain string."""
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


class FakeTelegram:
    def __init__(self, token: str = TOKEN):
        self.token = token
        self.calls: list[Call] = []
        self.updates: list[dict] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.fail_next: dict[str, int] = {}  # method -> how many calls answer 400
        self.faults: dict[str, list[tuple[int, dict]]] = {}  # method -> (status, params)
        self.failed: list[tuple[Call, int]] = []  # calls answered with an injected error
        self.held: list[Call] = []  # calls left unanswered (see hold)
        self._holding: set[str] = set()
        self._stopping = asyncio.Event()
        self.confirmed = 0  # update ids below this were confirmed by an offset
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    def replica_url(self, name: str) -> str:
        """A base URL whose calls are marked as ``name``'s."""
        return f"http://127.0.0.1:{self.port}/{name}/bot"

    async def start(self) -> FakeTelegram:
        app = web.Application(client_max_size=20 * 2**20)
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        app.router.add_route("*", "/{replica}/bot{token}/{method}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------ what a test sends

    def _queue(self, update: dict) -> int:
        update_id = next(self._update_ids)
        self.updates.append({"update_id": update_id, **update})
        asyncio.get_running_loop().create_task(self._notify())
        return update_id

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _chat(self, chat_id: int, chat_type: str, forum: bool = False) -> dict:
        if chat_type == "private":
            return {"id": chat_id, "type": "private", "first_name": f"user{chat_id}"}
        return {"id": chat_id, "type": chat_type, "title": f"group {chat_id}",
                **({"is_forum": True} if forum else {})}

    def _user(self, user_id: int) -> dict:
        return {"id": user_id, "is_bot": False, "first_name": f"User{user_id}",
                "username": f"user{user_id}"}

    def message(self, chat_id: int, user_id: int, text: str, chat_type: str = "private",
                edited: bool = False, topic: int | None = None,
                anonymous: bool = False) -> int:
        """Queue a text message (a command gets its bot_command entity, like Telegram's).

        ``topic``: sent in that forum topic of a supergroup with topics; ``anonymous``:
        posted by an anonymous admin (``sender_chat`` is the group, ``from`` the
        GroupAnonymousBot placeholder).
        """
        chat = self._chat(chat_id, chat_type, forum=topic is not None)
        msg = {"message_id": next(self._message_ids), "date": int(time.time()),
               "chat": chat, "from": self._user(user_id), "text": text}
        if topic is not None:
            msg.update(message_thread_id=topic, is_topic_message=True)
        if anonymous:
            msg.update({"from": ANONYMOUS_ADMIN, "sender_chat": chat})
        if text.startswith("/"):
            msg["entities"] = [{"type": "bot_command", "offset": 0,
                                "length": len(text.split()[0]) if text.split() else 1}]
        if edited:
            msg["edit_date"] = int(time.time())
        return self._queue({"edited_message" if edited else "message": msg})

    def press(self, chat_id: int, user_id: int, data: str, message_id: int = 1) -> int:
        """Queue a tap on an inline button carrying ``data``."""
        message = {"message_id": message_id, "date": int(time.time()),
                   "chat": self._chat(chat_id, "private"), "from": BOT_USER, "text": "..."}
        return self._queue({"callback_query": {
            "id": str(next(self._update_ids) * 7919), "from": self._user(user_id),
            "chat_instance": str(chat_id), "message": message, "data": data}})

    def fail(self, method: str, status: int, times: int = 1,
             retry_after: int | None = None) -> None:
        """Answer the next ``times`` calls of ``method`` with this HTTP error."""
        params = {"retry_after": retry_after} if retry_after is not None else {}
        self.faults.setdefault(method, []).extend([(status, params)] * times)

    def hold(self, method: str, on: bool = True, replica: str = "") -> None:
        """Leave calls of ``method`` unanswered from now on (``on=False``: answer again);
        with ``replica``, only that replica's."""
        key = f"{replica}/{method}" if replica else method
        (self._holding.add if on else self._holding.discard)(key)

    # ------------------------------------------------------------ what a test reads

    def sent(self, method: str, where: Callable[[dict], bool] = lambda p: True) -> list[dict]:
        return [c.params for c in self.calls if c.method == method and where(c.params)]

    async def wait_for(self, method: str, where: Callable[[dict], bool] = lambda p: True,
                       count: int = 1, timeout: float = 60.0) -> list[dict]:
        """The first ``count`` matching calls, waiting for them (a test fails on timeout)."""
        async def enough():
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.sent(method, where)) >= count)
        await asyncio.wait_for(enough(), timeout)
        return self.sent(method, where)[:count]

    # ------------------------------------------------------------ the Bot API

    async def _dispatch(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401,
                                      "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        replica = request.match_info.get("replica", "")
        form = await request.post()
        params = {k: (_decode(v) if isinstance(v, str) else v.file.read())
                  for k, v in form.items()}
        # Held: never answered; the caller's timeout or kill ends it.
        if {method, f"{replica}/{method}"} & self._holding:
            self.held.append(Call(method, params, replica=replica))
            await self._notify()
            await self._stopping.wait()
            return web.Response(status=503)
        if self.faults.get(method):
            return self._fault(method, params, *self.faults[method].pop(0))
        if method != "getUpdates":
            self.calls.append(Call(method, params, replica=replica))
            await self._notify()
        if self.fail_next.get(method):
            self.fail_next[method] -= 1
            return web.json_response({"ok": False, "error_code": 400,
                                      "description": "Bad Request: injected failure"},
                                     status=400)
        handler = getattr(self, f"_api_{method}", None)
        result = await handler(params) if handler else True
        return web.json_response({"ok": True, "result": result})

    def _fault(self, method: str, params: dict, status: int, extra: dict) -> web.Response:
        self.failed.append((Call(method, params), status))
        description = {429: f"Too Many Requests: retry after {extra.get('retry_after')}",
                       500: "Internal Server Error", 502: "Bad Gateway"}.get(
            status, f"Error {status}")
        body = {"ok": False, "error_code": status, "description": description}
        if extra:
            body["parameters"] = extra
        return web.json_response(body, status=status)

    async def _api_getMe(self, params):
        return BOT_USER

    async def _api_getUpdates(self, params):
        offset = int(params.get("offset") or 0)
        self.updates = [u for u in self.updates if u["update_id"] >= offset]  # confirmed
        self.confirmed = max(self.confirmed, offset)
        wait = min(float(params.get("timeout") or 0), MAX_POLL_WAIT_S)
        if not self.updates and wait:
            with_timeout = asyncio.wait_for(self._wait_update(), wait)
            try:
                await with_timeout
            except TimeoutError:
                pass
        return self.updates[:int(params.get("limit") or 100)]

    async def _wait_update(self):
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self.updates))

    def _message(self, params, **extra) -> dict:
        chat_id = int(params["chat_id"])
        chat = self._chat(chat_id, "private" if chat_id > 0 else "group")
        msg = {"message_id": next(self._message_ids), "date": int(time.time()),
               "chat": chat, "from": BOT_USER, **extra}
        if "message_thread_id" in params:
            msg.update(message_thread_id=params["message_thread_id"],
                       is_topic_message=True)
        if "reply_markup" in params:
            msg["reply_markup"] = params["reply_markup"]
        return msg

    async def _api_sendMessage(self, params):
        return self._message(params, text=str(params["text"]))

    async def _api_sendPhoto(self, params):
        photo = [{"file_id": "p1", "file_unique_id": "u1", "width": 64, "height": 64}]
        caption = params.get("caption")
        return self._message(params, photo=photo, **({"caption": caption} if caption else {}))

    async def _api_editMessageReplyMarkup(self, params):
        return self._message(params, text="...")
