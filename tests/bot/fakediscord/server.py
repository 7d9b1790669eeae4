"""A fake Discord (gateway websocket + REST API) on 127.0.0.1 for the real discord.py.

    fake = await FakeDiscord().start()
    fake.patch(monkeypatch)            # point discord.py's REST base and gateway here
    ... start the bot, await fake.wait_ready() ...
    token = await fake.slash("austen", {"text": "It is"}, author=ALICE)
    replies = await fake.wait_for(lambda: fake.messages_for(token))

The gateway speaks HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeat ACKs and
dispatches whatever a test sends (INTERACTION_CREATE, MESSAGE_CREATE). It shards as
Discord does: ``GET /gateway/bot`` recommends ``shards`` connections, each IDENTIFY
names its ``[shard_id, count]``, a guild's events go to shard ``(guild_id >> 22) %
count``, and an IDENTIFY for fewer than ``required_shards`` is closed with 4011
("sharding required", what Discord does past 2,500 servers). ``close_code`` closes
every IDENTIFY with that code instead (an outage, a revoked permission). The REST side
answers what the adapter calls (login, application info, command sync, interaction
callbacks, followup webhooks, channel messages, fetching a user and opening a direct
message channel) and records every call; anything else
is answered 404 and recorded too, so a test can see calls it did not expect.
"""
from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yarl
from aiohttp import WSMsgType, web

from . import payloads as p

API = "/api/v10"
REFUSED_TOKEN = "refused-token"  # the fake answers 401 to this token, as Discord would


@dataclass
class Call:
    """One REST request: what was asked and the body (payload_json for multipart)."""

    method: str
    path: str
    body: Any = None
    files: dict[str, bytes] = field(default_factory=dict)
    token: str = ""            # the interaction token, for callbacks and webhooks
    message: dict | None = None  # the message this call created or edited


class FakeDiscord:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.commands: list[dict] = []     # the last bulk-overwritten command list
        self.messages: dict[str, dict] = {}  # every message created, by id
        self.dm_channels: dict[str, str] = {}  # direct-message channel id -> user id
        self.identified = 0                # IDENTIFYs answered with READY (one per shard)
        self.identify: dict = {}           # the last IDENTIFY payload (token, intents)
        self.shards_identified: list[list[int]] = []  # [shard id, count] of each READY
        self.refused: list[int] = []       # close codes sent instead of READY
        self.shards = 1                    # what GET /gateway/bot recommends
        self.required_shards = 1           # fewer shards per IDENTIFY: closed with 4011
        self.close_code: int | None = None  # set: every IDENTIFY is closed with it
        self._ws: dict[int, web.WebSocketResponse] = {}  # shard id -> live connection
        self._count = 1                    # the shard count the live connections use
        self._seq: dict[int, int] = {}
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ---- lifecycle -------------------------------------------------------------
    async def start(self) -> FakeDiscord:
        app = web.Application()
        app.router.add_get("/gateway/", self._gateway)
        app.router.add_route("*", API + "/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        for ws in list(self._ws.values()):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}{API}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway/"

    def patch(self, monkeypatch) -> None:
        """Point discord.py here; the class attributes are restored after the test."""
        import discord.gateway
        import discord.http

        monkeypatch.setattr(discord.http.Route, "BASE", self.api_base)
        monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY",
                            yarl.URL(self.gateway_url))

    # ---- waiting -----------------------------------------------------------------
    def _touch(self) -> None:
        self._changed.set()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
        """The first truthy ``predicate()``, re-checked after every recorded event."""
        async def poll():
            while True:
                self._changed.clear()
                value = predicate()
                if value:
                    return value
                await self._changed.wait()
        try:
            return await asyncio.wait_for(poll(), timeout)
        except TimeoutError:
            seen = "\n".join(f"  {c.method} {c.path} {str(c.body)[:200]}" for c in self.calls)
            raise AssertionError(f"condition not met; calls so far:\n{seen}") from None

    async def wait_ready(self, identified: int = 1) -> None:
        """Until ``identified`` clients have connected and are on the gateway."""
        await self.wait_for(lambda: self.identified >= identified
                            and len(self._ws) == self._count)

    # ---- gateway -----------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None})
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            if frame["op"] == 1:  # heartbeat
                await ws.send_json({"op": 11, "d": None, "s": None, "t": None})
            elif frame["op"] == 2:  # identify: the live connection of its shard
                await self._identify(ws, frame["d"])
                self._touch()
        for shard, live in list(self._ws.items()):
            if live is ws:
                del self._ws[shard]
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: dict) -> None:
        self.identify = data
        shard, count = data.get("shard", [0, 1])
        code = self.close_code or (4011 if count < self.required_shards else None)
        if code is not None:
            self.refused.append(code)
            await ws.close(code=code, message=b"refused by the fake")
            return
        if count != self._count:  # a new layout: the old connections are stale
            self._ws.clear()
        self._ws[shard], self._count, self._seq[shard] = ws, count, 0
        guilds = [g for g in p.GUILDS if (g >> 22) % count == shard]
        await self._send(shard, "READY", p.ready(uuid.uuid4().hex, self.gateway_url, guilds,
                                                 (shard, count)))
        for guild_id in guilds:
            await self._send(shard, "GUILD_CREATE", p.guild(guild_id))
        self.identified += 1
        self.shards_identified.append([shard, count])

    async def dispatch(self, event: str, data: dict, guild_id: int = p.GUILD_ID) -> None:
        """Send one DISPATCH frame on the shard that serves ``guild_id``."""
        await self._send((guild_id >> 22) % self._count, event, data)

    async def _send(self, shard: int, event: str, data: dict) -> None:
        assert shard in self._ws, f"no client is connected on shard {shard}"
        self._seq[shard] += 1
        await self._ws[shard].send_json({"op": 0, "t": event, "s": self._seq[shard],
                                         "d": data})

    # ---- what a test does as a Discord user ----------------------------------------
    async def slash(self, name: str, options: dict[str, str] | None = None, *,
                    author: dict, roles: tuple[int, ...] = (), synced: bool = True,
                    guild_id: int = p.GUILD_ID) -> str:
        """A user runs /name with string options in a guild; the interaction token.

        ``synced=False`` sends a command the bot never synced (a stale client menu).
        """
        command = next((c for c in self.commands if c["name"] == name), None)
        if synced:
            assert command, f"/{name} was not synced; have {self.command_names()}"
        token = "cmd-" + uuid.uuid4().hex
        command_id = command["id"] if command else str(p.new_id())
        data = p.command_data(name, command_id, options or {}, guild_id)
        await self.dispatch("INTERACTION_CREATE",
                            p.interaction(2, data, token, author, roles, guild_id=guild_id),
                            guild_id)
        return token

    async def press(self, message: dict, custom_id: str, *, author: dict,
                    roles: tuple[int, ...] = ()) -> str:
        """A user presses the button ``custom_id`` under ``message``; the token."""
        token = "btn-" + uuid.uuid4().hex
        data = {"custom_id": custom_id, "component_type": 2}
        await self.dispatch("INTERACTION_CREATE",
                            p.interaction(3, data, token, author, roles, msg=message))
        return token

    async def say(self, content: str, *, author: dict) -> None:
        """A user posts ``content`` in the channel (MESSAGE_CREATE)."""
        await self.dispatch("MESSAGE_CREATE", p.message({"content": content}, author=author)
                            | {"member": p.member(author)})

    # ---- what the bot did ----------------------------------------------------------
    def command_names(self) -> list[str]:
        return [c["name"] for c in self.commands]

    def calls_for(self, token: str) -> list[Call]:
        return [c for c in self.calls if c.token == token]

    def messages_for(self, token: str) -> list[dict]:
        """Messages the bot sent in answer to one interaction, in order."""
        return [c.message for c in self.calls_for(token) if c.message is not None]

    def dms_to(self, user_id: int) -> list[dict]:
        """Direct messages the bot sent to one user, in order."""
        return [c.message for c in self.calls if c.message is not None
                and self.dm_channels.get(c.message["channel_id"]) == str(user_id)]

    def channel_messages(self) -> list[dict]:
        return [c.message for c in self.calls
                if c.path.startswith("/channels/") and c.message is not None]

    # ---- REST --------------------------------------------------------------------
    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        body, files = await _read_body(request)
        call = Call(request.method, path, body, files)
        self.calls.append(call)
        try:
            if request.headers.get("Authorization") == f"Bot {REFUSED_TOKEN}":
                status, answer = 401, {"message": "401: Unauthorized", "code": 0}
            else:
                status, answer = self._answer(call, request.query)
        finally:
            self._touch()
        if status == 204:
            return web.Response(status=204)
        # discord.py parses a body as JSON only for exactly "application/json"
        return web.Response(body=json.dumps(answer).encode(), status=status,
                            content_type="application/json")

    def _answer(self, call: Call, query) -> tuple[int, Any]:
        parts = call.path.strip("/").split("/")
        route = (call.method, *parts)
        if route in {("GET", "users", "@me")}:
            return 200, p.BOT_USER
        if route[:2] == ("GET", "users") and len(parts) == 2 and parts[1].isdigit():
            return 200, p.user(int(parts[1]), f"user{parts[1]}")
        if route == ("POST", "users", "@me", "channels"):  # open a DM channel
            recipient = str(call.body["recipient_id"])
            channel_id = str(p.new_id())
            self.dm_channels[channel_id] = recipient
            return 200, p.dm_channel(int(channel_id), p.user(int(recipient),
                                                             f"user{recipient}"))
        if route == ("GET", "oauth2", "applications", "@me"):
            return 200, p.application()
        if call.method == "GET" and parts[0] == "gateway":
            return 200, {"url": self.gateway_url, "shards": self.shards, "session_start_limit": {
                "total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}}
        if call.method == "PUT" and parts[0] == "applications" and parts[-1] == "commands":
            self.commands = [dict(c, id=str(p.new_id()), application_id=str(p.APP_ID),
                                  version="1", type=c.get("type", 1)) for c in call.body]
            return 200, self.commands
        if call.method == "POST" and parts[0] == "interactions":
            call.token = parts[2]
            return 200, self._callback(call, parts[1])
        if parts[0] == "webhooks" and len(parts) >= 3:
            call.token = parts[2]
            return self._webhook(call, parts)
        if route[:2] == ("POST", "channels") and parts[-1] == "typing":
            return 204, None
        if route[:2] == ("POST", "channels") and parts[-1] == "messages":
            message = self._create(call)
            if parts[1] in self.dm_channels:  # a direct message: no guild
                message["channel_id"] = parts[1]
                del message["guild_id"]
            return 200, message
        return 404, {"message": f"fake Discord has no {call.method} {call.path}", "code": 0}

    def _create(self, call: Call, body: dict | None = None) -> dict:
        """A message from ``body`` (default: the call's), recorded on the call."""
        attachments = [{"id": str(p.new_id()), "filename": name, "size": len(data),
                        "url": f"http://127.0.0.1/{name}", "proxy_url": "", "flags": 0}
                       for name, data in call.files.items()]
        msg = p.message(body or call.body or {}, attachments=attachments)
        self.messages[msg["id"]] = msg
        call.message = msg
        return msg

    def _callback(self, call: Call, interaction_id: str) -> dict:
        kind = call.body["type"]
        data = call.body.get("data") or {}
        answer = {"interaction": {"id": interaction_id, "type": 2,
                                  "response_message_loading": kind == 5,
                                  "response_message_ephemeral": bool(data.get("flags", 0) & 64)},
                  "resource": {"type": kind}}
        if kind == 4:  # CHANNEL_MESSAGE_WITH_SOURCE: a message now
            answer["resource"]["message"] = self._create(call, data)
        return answer

    def _webhook(self, call: Call, parts: list[str]) -> tuple[int, Any]:
        if call.method == "POST" and len(parts) == 3:  # a followup message
            return 200, self._create(call)
        if len(parts) == 5 and parts[3] == "messages":
            if call.method == "DELETE":
                return 204, None
            if call.method == "PATCH":  # editing @original (the deferred reply)
                return 200, self._create(call)
        return 404, {"message": f"fake Discord has no {call.method} {call.path}", "code": 0}


async def _read_body(request: web.Request) -> tuple[Any, dict[str, bytes]]:
    """JSON body, or a multipart's payload_json and its files (by filename)."""
    if not request.body_exists:
        return None, {}
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        files = {f.filename: f.file.read() for k, f in form.items() if hasattr(f, "file")}
        return json.loads(form.get("payload_json", "null")), files
    return await request.json(), {}
