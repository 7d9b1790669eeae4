"""The terminal chat: the same commands as Telegram and Discord, one line per message.

    python -m bot console                      # type /help, /austen It is a truth, /rate up
    printf '/austen It is\\n/rate up\\n' | python -m bot console   # scriptable

The person at the terminal is user "local" in chat "local" (an admin by default, see
``[admins]`` in config.toml). Replies are printed as they are; a reply with a picture
saves it under var/console/ and prints the path; an admin notice (a training run
finished) is printed as "[admin] ...". A terminal has no buttons, so this adapter adds
the command ``/rate up|down``, which rates the last text. End with Ctrl-D (or end of
input).
"""
from __future__ import annotations

import asyncio
import getpass
import sys
import threading
from pathlib import Path

from bot.commands import Command
from bot.core import Core
from bot.messages import Context, Reply, Request, UserError
from settings import ROOT

PICTURES = ROOT / "var" / "console"
USER = CHAT = "local"


def _user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers; the id is what matters
        return USER


def render(reply: Reply, picture_dir: Path = PICTURES) -> str:
    """The text to print for a reply."""
    parts = [reply.text] if reply.text else []
    if reply.photo is not None:
        picture_dir.mkdir(parents=True, exist_ok=True)
        path = picture_dir / f"picture-{len(list(picture_dir.glob('*.png'))) + 1}.png"
        path.write_bytes(reply.photo)
        parts.append(f"(picture saved to {path})")
    if reply.rate_generation is not None:
        parts.append("(rate it: /rate up or /rate down)")
    return "\n".join(parts)


class LastText:
    """The console's /rate: the last rated-able text per chat and user, rated on demand."""

    VALUES = {"up": 1, "+": 1, "+1": 1, "down": -1, "-": -1, "-1": -1}

    def __init__(self, core: Core):
        self.core = core
        self.last: dict[tuple[str, str], int] = {}  # (chat, user) -> generation id

    def command(self) -> Command:
        return Command("rate", "Rate the last text: /rate up or /rate down", self.rate,
                       platforms=("console",))

    def saw(self, request: Request, reply: Reply) -> None:
        if reply.rate_generation is not None:
            self.last[(request.chat_id, request.user_id)] = reply.rate_generation

    async def rate(self, ctx: Context) -> Reply:
        """/rate up|down rates the last text in this chat."""
        value = self.VALUES.get(ctx.args.strip().lower())
        if value is None:
            raise UserError("Usage: /rate up or /rate down.")
        req = ctx.request
        generation_id = self.last.get((req.chat_id, req.user_id))
        if generation_id is None:
            raise UserError("Nothing to rate yet: ask for a text first.")
        return Reply(await self.core.rate(req, f"rate:{generation_id}:{value:+d}"))


def _reader(stdin, loop: asyncio.AbstractEventLoop) -> asyncio.Queue:
    """Lines of ``stdin`` on a queue ("" at the end), read by a daemon thread.

    A daemon thread rather than ``asyncio.to_thread``: a read blocked on the terminal
    must not keep the process alive after Ctrl-C or a stop from another adapter.
    """
    queue: asyncio.Queue = asyncio.Queue()

    def pump() -> None:
        while True:
            try:
                line = stdin.readline()
            except (OSError, ValueError):  # closed or undecodable input: treat as the end
                line = ""
            loop.call_soon_threadsafe(queue.put_nowait, line)
            if not line:
                return

    threading.Thread(target=pump, name="console-stdin", daemon=True).start()
    return queue


async def serve(core: Core, token: str = "", stop: asyncio.Event | None = None,
                stdin=None, stdout=None) -> None:
    """Chat on stdin/stdout until end of input or ``stop``."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    interactive = stdin.isatty()
    name = _user_name()
    ratings = LastText(core)
    core.add_command(ratings.command())
    help_reply = await core.handle(Request("console", CHAT, USER, name, "terminal", "/help"))
    print(render(help_reply) + "\nCtrl-D quits.", file=stdout, flush=True)
    lines = _reader(stdin, asyncio.get_running_loop())
    stop = stop or asyncio.Event()

    async def notify(text: str) -> None:  # the person at the terminal runs the bot
        print(f"[admin] {text}", file=stdout, flush=True)

    core.add_notifier(notify)
    try:
        await _chat(core, ratings, lines, stop, stdout, interactive, name)
    finally:
        core.remove_notifier(notify)


async def _chat(core: Core, ratings: LastText, lines: asyncio.Queue, stop: asyncio.Event,
                stdout, interactive: bool, name: str) -> None:
    while not stop.is_set():
        if interactive:
            print("> ", end="", file=stdout, flush=True)
        line = await _next_line(lines, stop)
        if not line:
            return
        if not line.strip():
            continue
        request = Request("console", CHAT, USER, name, "terminal", line.rstrip("\n"))
        reply = await core.handle(request)
        ratings.saw(request, reply)
        if not reply.silent:
            print(render(reply), file=stdout, flush=True)


async def _next_line(lines: asyncio.Queue, stop: asyncio.Event) -> str:
    """The next line, or "" when the input ends or ``stop`` is set first."""
    get, stopped = asyncio.ensure_future(lines.get()), asyncio.ensure_future(stop.wait())
    done, pending = await asyncio.wait({get, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return get.result() if get in done else ""
