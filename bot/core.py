"""The transport-agnostic chat core: ``Request`` in, ``Reply`` out.

Every rule a user meets lives here once: parsing, admin checks, per-user rate limits,
the bound on generations in flight, choosing style / variant / sampling parameters,
calling the generation client, and logging every request (rejected ones included) to
storage. Adapters (bot/adapters/*.py) only translate platform events to ``Request``
and ``Reply`` back; nothing here knows a platform. The command handlers other than
generation live in ``bot/commands.py`` and use the public methods and attributes here
(``commands.CoreAPI``); an adapter may add a command of its own (``add_command``).

    core = Core.from_config()                      # the one place the bot is wired
    reply = await core.handle(Request("console", "local", "local", text="/austen It is"))
    ack = await core.rate(request, "rate:17:+1")   # a rating button was pressed
    core.add_notifier(send_to_admins)              # an adapter's push to its admins
    await core.notify_admins("retrain austen: ...") # bot/notices.py, finished trainings
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

from bot.commands import Command, build_commands, example_command
from bot.identity import user_row_id
from bot.messages import Context, Reply, Request, UserError
from bot.metrics import BotMetrics
from bot.ratelimit_redis import make_limiter
from bot.settings import BotSettings, load_settings
from bot.slots import Slots
from bot.temperatures import TemperatureCache
from bot.text import (
    RATE_PREFIX,
    SORRY,
    THUMBS_DOWN,
    THUMBS_UP,
    dropped_note,
    parse_command,
    parse_rating,
    prime_too_long,
    rating_buttons,
    refused_params,
    split_message,
)
from bot.wiring import make_client
from genmodels.sampler import SamplingParams
from genmodels.styles import Style, StyleBook, load_styles
from serving.client import Busy, GenerationClient, GenerationError
from settings.logs import REQUEST_ID, new_request_id
from storage.bandit import load_config as load_bandit_config
from storage.database import Database
from storage.errors import NotFound, StorageError
from storage.log import mark_undelivered
from storage.models import Outcome
from storage.ratings import rate as store_rating, rating_by
from storage.records import RequestRecord

__all__ = ["Request", "Reply", "Core", "BotSettings", "RATE_PREFIX", "SORRY",
           "rating_buttons", "split_message", "parse_rating"]
log = logging.getLogger(__name__)
Notifier = Callable[[str], Awaitable[None]]  # sends one text to every admin it reaches
BUSY = "Sorry, I am busy writing for others; try again in a moment."


class Core:
    def __init__(self, book: StyleBook, db: Database, client: GenerationClient,
                 settings: BotSettings):
        self.book, self.db, self.client, self.settings = book, db, client, settings
        # Buckets in Redis shared by every replica when configured, else in-process.
        self.limiter = make_limiter(settings.rate_burst, settings.rate_per_minute,
                                    settings.redis_url, settings.redis_prefix)
        # Generations and pictures at once: in this process, and across replicas with Redis.
        self.slots = Slots(settings.max_in_flight, settings.redis_url, settings.redis_prefix)
        self._queued = 0  # generations running or waiting for a slot
        self.registry = build_commands(self)
        self.metrics = BotMetrics(self.registry)  # Prometheus (bot/metrics.py)
        # Learned temperatures: the grid from [bandit] of the same config.toml.
        self.bandit = load_bandit_config(book.path) if settings.learn_temperature else None
        self.rng = np.random.default_rng()  # bandit draws (NumPy's generator locks itself)
        self.notifiers: list[Notifier] = []  # adapters' pushes to admins (notify_admins)
        # Replies never wait on the database past settings.db_wait_s: temperatures come
        # from a snapshot, and log rows are written by tasks (request uid -> task).
        self.temps = TemperatureCache(lambda *a: self.db.run(*a), book, self.bandit,
                                      settings.db_wait_s)
        self._logging: dict[str, asyncio.Task] = {}

    @classmethod
    def from_config(cls, path: str | Path | None = None, *, db: Database | None = None,
                    client: GenerationClient | None = None) -> Core:
        """The bot as config.toml (``$BOT_CONFIG``) describes it: the one wiring point."""
        book = load_styles(path)
        settings = load_settings(book.path)
        return cls(book, db or Database(), client or make_client(book.path), settings)

    async def close(self) -> None:
        await self.temps.close()
        # Every log row is written (or spooled) before the database closes: each write
        # is bounded by the database's own timeouts.
        await asyncio.gather(*self._logging.values(), return_exceptions=True)
        await self.client.close()
        await self.limiter.close()
        await self.slots.close()
        await asyncio.to_thread(self.db.close)

    # ----------------------------------------------------------------- entry points

    async def handle(self, request: Request) -> Reply:
        """The reply to one message; never raises (a bug becomes a short apology).

        Its log row's uid is the request id: on each log record made while handling it,
        and sent to the inference service as ``X-Request-Id`` (settings/logs.py)."""
        uid = new_request_id()
        token = REQUEST_ID.set(uid)
        try:
            return await self._handle(request, uid)
        except Exception:
            log.exception("handling %s message %r failed", request.platform,
                          request.text[:80])
            return Reply(SORRY)
        finally:
            REQUEST_ID.reset(token)

    async def rate(self, request: Request, data: str) -> str:
        """Store a rating from button data; a short acknowledgement. Never raises."""
        parsed = parse_rating(data)
        if parsed is None:
            return "Sorry, I do not recognise that button."
        try:
            old, new = await self.db.run(_store_rating, request, *parsed)
        except NotFound:
            return "Sorry, I no longer have that text, so it cannot be rated."
        except StorageError as exc:
            log.error("rating not stored: %s", exc)
            return "Sorry, I could not record that rating just now; please try again."
        except Exception:
            log.exception("rating %r failed", data)
            return SORRY
        thumb = THUMBS_UP if new > 0 else THUMBS_DOWN
        if old is None:
            return f"Thanks for the {thumb}!"
        return f"You already gave it {thumb}." if old == new else f"Changed to {thumb}."

    async def undelivered(self, reply: Reply, reason: str) -> None:
        """Record in the request's log row that ``reply`` never reached the user.

        Adapters call it once their platform's retries are spent. Never raises.
        """
        if reply.request_uid is None:
            return
        pending = self._logging.get(reply.request_uid)
        if pending is not None:  # its row may not be written yet
            await asyncio.gather(asyncio.shield(pending), return_exceptions=True)
        try:
            found = await self.db.run(mark_undelivered, reply.request_uid, reason)
        except Exception:
            log.exception("request %s: undelivered reply not recorded", reply.request_uid)
            return
        if not found:  # spooled during an outage: it will be stored as it was
            log.warning("request %s: undelivered reply not recorded (no row yet)",
                        reply.request_uid)

    def commands(self) -> list[tuple[str, str]]:
        """(command, description) for every platform's command menu."""
        return [(c.name, c.description) for c in self.registry.values()
                if not c.platforms]

    def add_command(self, command: Command) -> None:
        """An adapter's own command (the console's /rate), replacing one of that name.

        Listed before the admin commands, as /help lists them; counted in the metrics
        under its name. The registry is changed in place: the metrics hold it.
        """
        others = [c for c in self.registry.values() if c.name != command.name]
        at = next((i for i, c in enumerate(others) if c.admin), len(others))
        self.registry.clear()
        self.registry.update((c.name, c) for c in [*others[:at], command, *others[at:]])

    # ----------------------------------------------------------------- admin notices

    def add_notifier(self, notify: Notifier) -> None:
        """An adapter's ``notify(text)``: send ``text`` to every admin it can reach."""
        self.notifiers.append(notify)

    def remove_notifier(self, notify: Notifier) -> None:
        if notify in self.notifiers:
            self.notifiers.remove(notify)

    async def notify_admins(self, text: str) -> None:
        """Push ``text`` through every adapter; a failure is logged, never raised."""
        for notify in list(self.notifiers):
            try:
                await notify(text)
            except Exception:
                log.exception("admin notice via %r failed", notify)

    def is_admin(self, request: Request) -> bool:
        if request.user_id in self.settings.admin_ids(request.platform):
            return True
        # Role ids, never names (anyone can name a role "admins" in a server of their
        # own), and only in the servers config.toml lists. Only an adapter whose platform
        # has servers and roles fills them in (Discord's); the rest leave them empty.
        return (bool(request.guild_id) and request.guild_id in self.settings.admin_guilds
                and bool(set(request.roles) & self.settings.admin_roles))

    # ----------------------------------------------------------------- dispatch

    async def _handle(self, request: Request, uid: str) -> Reply:
        started = time.perf_counter()
        parsed = parse_command(request.text, request.bot_username)
        if parsed.other_bot:
            return Reply("", silent=True)
        record = RequestRecord(request.platform, request.user_id or "?",
                               request.chat_id or "?", user_name=request.user_name,
                               chat_title=request.chat_name, command=parsed.command,
                               prime=parsed.args, uid=uid)
        ctx = Context(request, parsed.command, parsed.args, record)
        try:
            reply = await self._dispatch(ctx)
        except UserError as exc:
            record.outcome, record.error = exc.outcome.value, str(exc)
            reply = Reply("", silent=True) if exc.silent else Reply(str(exc))
        except Exception as exc:  # a bug or an unexpected client error: still logged
            log.exception("handling %s message %r failed", request.platform,
                          request.text[:80])
            record.outcome, record.error = Outcome.ERROR.value, repr(exc)
            record.text = None
            reply = Reply(SORRY)
        logged = await self._logged(record)
        if record.text is not None and logged is not None:
            reply = dataclasses.replace(reply, rate_generation=logged.generation_id)
        # Where every request addressed to the bot finishes, refused ones included.
        elapsed = time.perf_counter() - started
        self.metrics.finished(request.platform, record.command, record.outcome, elapsed)
        log.info("%s /%s: %s in %.0f ms", request.platform, record.command or "-",
                 record.outcome, elapsed * 1000)
        return dataclasses.replace(reply, request_uid=record.uid)

    async def _dispatch(self, ctx: Context) -> Reply:
        # Admins are exempt: they run the bot (and the console's user is one).
        key = (ctx.request.platform, ctx.request.user_id)
        wait, say_so = ((0.0, False) if self.is_admin(ctx.request)
                        else await self.limiter.check(key))
        if wait:  # said once per cool-down: each reply would feed the flood
            raise UserError(f"Slow down a little, please: try again in "
                            f"{math.ceil(wait)} s.", Outcome.RATE_LIMITED,
                            silent=not say_so)
        command = self.registry.get(ctx.command)
        if command is None or (command.platforms
                               and ctx.request.platform not in command.platforms):
            show_help = self.registry["help"].handler  # unknown command or plain text
            reply = await show_help(ctx)
            ctx.record.outcome = Outcome.BAD_INPUT.value
            if ctx.command:
                ctx.record.error = f"unknown command /{ctx.command}"
                return Reply(f"Sorry, I do not know /{ctx.command}.\n\n{reply.text}")
            ctx.record.error = "no command"
            return Reply(f"Start with a command, e.g. {example_command(self.book)}.\n\n"
                         f"{reply.text}")
        if command.admin and not self.is_admin(ctx.request):
            raise UserError(f"Sorry, /{command.name} is for the bot's admins.")
        return await command.handler(ctx)

    async def _logged(self, record: RequestRecord):
        """Start storing ``record``; its ids if it was stored within ``db_wait_s``.

        Only a generated text waits, for the id its rating buttons carry; any other
        reply goes at once. A write still running goes on (``close`` waits for it).
        """
        task = asyncio.create_task(self._log(record))
        self._logging[record.uid] = task
        task.add_done_callback(lambda _: self._logging.pop(record.uid, None))
        if record.text is None:
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.settings.db_wait_s)
        except TimeoutError:
            log.warning("request %s: no rating buttons, the database is slow", record.uid)
            return None

    async def _log(self, record: RequestRecord):
        """Store the request; a storage failure is logged, never shown to the user."""
        try:
            return await self.db.log_request(record)
        except Exception:
            log.exception("request %s (%s) could not be logged", record.uid,
                          record.command)
            return None

    # ----------------------------------------------------------------- generation

    async def generate(self, ctx: Context, style: Style, prime: str) -> Reply:
        """Write text in ``style`` after ``prime``; fills the record for the log."""
        rec = ctx.record
        rec.style, rec.variant, rec.prime = style.name, style.variant, prime
        too_long = prime_too_long(prime, self.settings.max_prime_chars)
        if too_long:
            raise UserError(too_long)
        temperature, source = await self.temperature(ctx.request, style)
        params = SamplingParams(temperature=temperature, top_k=self.book.top_k,
                                top_p=self.book.top_p, max_chars=style.default_chars,
                                stop=style.stop)
        rec.temperature, rec.top_k, rec.top_p = temperature, params.top_k, params.top_p
        rec.max_chars = params.max_chars
        try:
            result = await self._bounded(style.name, prime, params)
        except Busy:
            raise UserError(BUSY, Outcome.BUSY) from None
        except GenerationError as exc:
            raise UserError(f"Sorry, {exc}.", Outcome.ERROR) from None
        except ValueError as exc:  # params the sampler refuses (SamplingParams.validate)
            log.warning("%s: the sampler refused the parameters (%s; temperature from %s)",
                        style.name, exc, source)
            raise UserError(refused_params(exc, source), Outcome.BAD_INPUT) from None
        gen = result.sample
        rec.text, rec.stop_reason, rec.seed = gen.text, gen.stop_reason, gen.seed
        rec.model_version, rec.latency_ms = gen.version, round(result.latency_ms)
        text = gen.full_text or "(The model wrote nothing this time; try again.)"
        if gen.dropped:
            text += ("\n\n(I left out characters this model has never seen: "
                     f"{dropped_note(gen.dropped)})")
        return Reply(text)

    async def _bounded(self, style: str, prime: str, params: SamplingParams):
        # Bounded in flight, bounded waiting: a burst queues briefly instead of failing,
        # and only past max_waiting does anyone get "busy".
        if self._queued >= self.settings.max_in_flight + self.settings.max_waiting:
            raise Busy(BUSY)
        self._queued += 1
        try:
            async with self.slots:
                return await self.client.generate(style, prime, params)
        finally:
            self._queued -= 1

    async def temperature(self, chat: Request, style: Style) -> tuple[float, str]:
        """The temperature for ``style`` in this chat and where it comes from.

        The one place it is chosen: chat > style > global setting; where nobody fixed
        one, a draw of the ratings bandit (source "bandit: ...", storage/bandit.py), or
        the config default (source "default") when learning is off. From a snapshot of
        the settings (bot/temperatures.py): no wait on the database.
        """
        return await self.temps.choose(chat, style, self.rng)


def _store_rating(session, request: Request, generation_id: int, value: int):
    user_id = user_row_id(session, request)
    old = rating_by(session, generation_id, user_id)
    store_rating(session, generation_id, user_id, value)
    return old, value
