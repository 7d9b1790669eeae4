"""Every chat command in one registry; /help is generated from it.

Each handler takes the ``Context`` of one request and returns a ``Reply`` (or raises
``UserError`` with the reply text); each ``Command``'s description is its /help line.
Handlers use the core only through ``CoreAPI``, the public part of ``bot.core.Core``
(which builds this registry: this module never imports the core). Generation itself
is ``Core.generate``; the storage work is ``bot/storage_work.py``, run off the event
loop by ``Database.run``. An adapter may add a command of its own
(``Core.add_command``: the console's /rate).

    python -m bot console    # then /help
"""
from __future__ import annotations

import asyncio
import importlib.util
import math
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bot import storage_work as work
from bot.messages import Context, Reply, Request, UserError
from bot.text import prime_too_long
from genmodels.sampler import MAX_TEMPERATURE, MIN_TEMPERATURE
from genmodels.styles import Style, StyleBook
from storage.models import Outcome
from storage.settings import usable_temperature

if TYPE_CHECKING:  # annotations only: the core's parts, none of them imports this module
    import numpy as np

    from bot.settings import BotSettings
    from bot.temperatures import TemperatureCache
    from serving.client import GenerationClient
    from storage.bandit import BanditConfig
    from storage.database import Database

Handler = Callable[[Context], Awaitable[Reply]]


@dataclass(frozen=True)
class Command:
    name: str
    description: str
    handler: Handler
    admin: bool = False
    platforms: tuple[str, ...] = ()  # empty: every platform


class CoreAPI(Protocol):
    """What the handlers use of ``bot.core.Core``: its public attributes and methods."""

    book: StyleBook
    db: Database
    client: GenerationClient
    settings: BotSettings
    temps: TemperatureCache  # refresh() after a change: the next text uses it
    registry: dict[str, Command]
    bandit: BanditConfig | None  # None: temperatures are not learned from ratings
    rng: np.random.Generator

    @property
    def slots(self) -> AbstractAsyncContextManager[object]:
        """The bound on CPU work in flight (generations, pictures): bot/slots.py."""

    def is_admin(self, request: Request) -> bool: ...

    async def generate(self, ctx: Context, style: Style, prime: str) -> Reply: ...

    async def temperature(self, request: Request, style: Style) -> tuple[float, str]: ...


def build_commands(core: CoreAPI) -> dict[str, Command]:
    """The registry: general commands, one per style command, then the admin ones."""
    h = Handlers(core)
    commands = [Command("start", "Say hello and list the commands", h.help),
                Command("help", "List the commands", h.help),
                Command("styles", "Every style with its description and variants", h.styles)]
    for name, styles in _by_command(core).items():
        commands.append(Command(name, _describe(styles), h.style_handler(name)))
    commands += [
        Command("temperature", "Show or set this chat's sampling temperature", h.temperature),
        Command("models", "Admins: model versions, val loss vs n-gram, ratings", h.models,
                True),
        Command("retrain", "Admins: queue a retrain of a style", h.retrain, True),
        Command("rollback", "Admins: serve a style's previous model again", h.rollback,
                True),
        Command("stats", "Admins: requests, ratings and latency per style and version",
                h.stats, True)]
    if all(importlib.util.find_spec(m) for m in ("matplotlib", "genmodels.neurons")):
        # The neuron pictures need matplotlib, which a chat-only install may lack.
        commands.insert(-4, Command("neurons", "A picture of one neuron over a text: "
                                    "/neurons STYLE [text]", h.neurons))
    return {c.name: c for c in commands}


def example_command(book: StyleBook) -> str:
    """A style command to show in examples: austen if there is one, else the first."""
    commands = [s.command for s in book.styles.values()]
    return "/" + ("austen" if "austen" in commands else commands[0])


def _by_command(core: CoreAPI) -> dict[str, list[Style]]:
    grouped: dict[str, list[Style]] = {}
    for style in core.book.styles.values():
        grouped.setdefault(style.command, []).append(style)
    return grouped


def _describe(styles: list[Style]) -> str:
    base = next((s for s in styles if not s.variant), styles[0])
    variants = sorted(s.variant for s in styles if s.variant)
    suffix = f" [{'|'.join(variants)}]" if variants else ""
    return f"{base.description}{suffix}"[:256]  # Telegram's limit for a description


def parse_temperature(token: str) -> float:
    try:
        value = float(token)
    except ValueError:
        value = math.nan
    # usable_temperature: the sampler's own bounds (storage refuses the rest as well).
    if not math.isfinite(value) or not usable_temperature(value):
        raise UserError(f"The temperature must be 0 (always the likeliest letter) or a "
                        f"number from {MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g} "
                        f"(e.g. /temperature 0.8); {token[:20]!r} is not.")
    return value


class Handlers:
    """The command handlers, bound to one core."""

    def __init__(self, core: CoreAPI):
        self.core = core

    def find_style(self, spec: str) -> Style | None:
        """A style by table name ("proverb_armenian"), label ("proverb armenian") or command."""
        spec = " ".join(spec.lower().split())
        for style in self.core.book.styles.values():
            if spec in (style.name, style.label):
                return style
        return None

    def need_style(self, spec: str, usage: str) -> Style:
        style = self.find_style(spec) if spec else None
        if style is None:
            names = ", ".join(self.core.book.styles)
            raise UserError(f"Usage: {usage} (a style: {names}).")
        return style

    async def help(self, ctx: Context) -> Reply:
        """The command list, generated from the registry."""
        admin = self.core.is_admin(ctx.request)
        lines = ["I write text in the style of famous books. Commands:"]
        for c in self.core.registry.values():
            if (c.admin and not admin) or (c.platforms and ctx.request.platform
                                           not in c.platforms):
                continue
            lines.append(f"/{c.name} - {c.description}")
        lines.append(f"Text after a style command starts the text, e.g. "
                     f"{example_command(self.core.book)} It was")
        return Reply("\n".join(lines))

    async def styles(self, ctx: Context) -> Reply:
        lines = []
        for styles in _by_command(self.core).values():
            for s in styles:
                lines.append(f"/{s.label} - {s.description}")
        return Reply("\n".join(lines))

    def style_handler(self, command: str) -> Handler:
        async def handler(ctx: Context) -> Reply:
            style, prime = self.style_and_prime(command, ctx.args)
            return await self.core.generate(ctx, style, prime)
        return handler

    def style_and_prime(self, command: str, args: str) -> tuple[Style, str]:
        """The variant is the first word when it names one; the rest primes the model.

        A lone lower-case Latin word that is no variant of a command that has variants
        (``/proverb georgian``) was meant as a variant: answer with the list rather than
        writing a parable that starts "georgian".
        """
        styles = _by_command(self.core)[command]
        variants = {s.variant: s for s in styles if s.variant}
        first, _, rest = args.partition(" ")
        if first.lower() in variants:
            return variants[first.lower()], rest.strip()
        plain = next((s for s in styles if not s.variant), None)
        lone_word = args.isascii() and args.isalpha() and args.islower()
        if plain is None or (variants and lone_word):
            choices = ", ".join(sorted(variants))
            raise UserError(f"Unknown {command} variant {args[:30]!r}; choose one of "
                            f"{choices}" + (" (or none)." if plain else "."))
        return plain, args

    async def temperature(self, ctx: Context) -> Reply:
        """/temperature [VALUE | STYLE | STYLE VALUE | reset [STYLE]]"""
        words = ctx.args.split()
        if not words:
            return await self.show_temperatures(ctx)
        if words[0].lower() == "reset":
            return await self.reset_temperature(ctx, " ".join(words[1:]))
        if len(words) == 1:
            style = self.find_style(words[0])
            if style is not None:
                value, source = await self.core.temperature(ctx.request, style)
                return Reply(f"{style.label}: {value:g} ({describe_source(source)})")
            return await self.set_chat_temperature(ctx, parse_temperature(words[0]))
        style = self.find_style(" ".join(words[:-1]))
        if not self.core.is_admin(ctx.request):
            raise UserError("Sorry, only the bot's admins set a style's temperature; "
                            "/temperature VALUE sets this chat's.")
        style = style or self.need_style("", "/temperature STYLE VALUE")  # raises
        value = parse_temperature(words[-1])
        old = await self.core.db.run(work.set_style_temperature, ctx.request, style.name,
                                     value)
        await self.core.temps.refresh()  # the next text here already uses it
        was = "unset" if old is None else f"{old:g}"
        return Reply(f"Temperature of {style.label} set to {value:g} (was {was}).")

    async def show_temperatures(self, ctx: Context) -> Reply:
        lines = ["Temperature here (higher is wilder; 0 always picks the likeliest "
                 "letter):"]
        learned = False
        for style in self.core.book.styles.values():
            value, source = await self.core.temperature(ctx.request, style)
            learned |= source.startswith(_LEARNED)
            lines.append(f"/{style.label}: {value:g} ({describe_source(source)})")
        if learned:
            lines.append("A learned temperature is drawn afresh for every text, from "
                         "the values your ratings favour.")
        return Reply("\n".join(lines))

    def may_set_chat(self, ctx: Context) -> None:
        if not (self.core.settings.chat_temperature_for_all
                or self.core.is_admin(ctx.request)):
            raise UserError("Sorry, only the bot's admins change the temperature here.")

    async def set_chat_temperature(self, ctx: Context, value: float) -> Reply:
        self.may_set_chat(ctx)
        old = await self.core.db.run(work.set_chat_temperature, ctx.request, value)
        await self.core.temps.refresh()
        was = "" if old is None else f" (was {old:g})"
        return Reply(f"Temperature in this chat set to {value:g}{was}; "
                     f"/temperature reset undoes it.")

    async def reset_temperature(self, ctx: Context, spec: str) -> Reply:
        if not spec:
            self.may_set_chat(ctx)
            old = await self.core.db.run(work.reset_temperature, ctx.request, None)
            what = "this chat"
        else:
            if not self.core.is_admin(ctx.request):
                raise UserError("Sorry, only the bot's admins reset a style's temperature.")
            style = self.need_style(spec, "/temperature reset [STYLE]")
            old = await self.core.db.run(work.reset_temperature, ctx.request, style.name)
            what = style.label
        await self.core.temps.refresh()
        if old is None:
            return Reply(f"No temperature was set for {what}; nothing to reset.")
        return Reply(f"Temperature for {what} reset (was {old:g}).")

    async def neurons(self, ctx: Context) -> Reply:
        """/neurons STYLE [text]: a picture of the most interpretable neuron."""
        words = ctx.args.split(" ")
        style = self.find_style(" ".join(words[:2])) if len(words) > 1 else None
        text = " ".join(words[2:]) if style else " ".join(words[1:])
        style = style or self.need_style(words[0], "/neurons STYLE [text]")
        rec = ctx.record
        rec.style, rec.variant, rec.prime = style.name, style.variant, text
        too_long = prime_too_long(text, self.core.settings.max_prime_chars)
        if too_long:
            raise UserError(too_long)
        from genmodels.artifact import ArtifactError
        from genmodels.neurons import style_picture  # late: imports matplotlib
        try:
            async with self.core.slots:  # CPU work: shares the generation bound
                png, caption = await asyncio.to_thread(
                    style_picture, style.name, text, shipped=style.model_dir.parent)
        except ArtifactError:
            raise UserError(f"Sorry, the {style.name} model is unavailable.",
                            Outcome.ERROR) from None
        except ValueError as exc:
            raise UserError(f"Sorry, {exc}.") from None
        return Reply(caption, photo=png)

    async def models(self, ctx: Context) -> Reply:
        if ctx.args:
            styles = [self.need_style(ctx.args, "/models [STYLE]")]
        else:
            styles = list(self.core.book.styles.values())
        served = await self.core.client.versions()
        # Hashing the corpora to find the cache entry is file work: off the event loop.
        baselines = await asyncio.to_thread(work.baselines, styles, self.core.book)
        lines = await self.core.db.run(work.model_lines, [s.name for s in styles], served,
                                       baselines)
        return Reply("\n".join(lines))

    async def retrain(self, ctx: Context) -> Reply:
        style = self.need_style(ctx.args, "/retrain STYLE")
        run_id, new = await self.core.db.run(work.queue_style_retrain, ctx.request, style)
        if not new:
            return Reply(f"A retrain of {style.label} is already queued or running "
                         f"(run {run_id}).")
        return Reply(f"Retrain of {style.label} queued (run {run_id}); the scheduler "
                     f"starts it soon.")

    async def rollback(self, ctx: Context) -> Reply:
        style = self.need_style(ctx.args, "/rollback STYLE")
        return Reply(await self.core.db.run(work.rollback_version, style.name))

    async def stats(self, ctx: Context) -> Reply:
        """Usage per style and version, then each style's temperature evidence."""
        core = self.core
        lines = await core.db.run(work.stats_lines)
        if core.bandit is None:
            lines.append("Temperatures: learning from ratings is off ([bandit] enabled).")
        else:
            lines.append("Temperatures learned from ratings (per value: up/down, "
                         "approval, probability it is the best):")
            lines += await core.db.run(work.evidence_lines, list(core.book.styles),
                                       core.rng, core.bandit)
        return Reply("\n".join(lines))


_SCOPES = {"chat": "set for this chat", "style": "set for this style by an admin",
           "global": "set for every style by an admin", "default": "default from config"}
_LEARNED = "bandit: "  # storage.bandit.choose_temperature's sources start so


def describe_source(source: str) -> str:
    """Where a temperature comes from, for users: "learned from ratings: exploring 0.9"."""
    if source.startswith(_LEARNED):
        return f"learned from ratings: {source[len(_LEARNED):]}"
    return _SCOPES.get(source, source)
