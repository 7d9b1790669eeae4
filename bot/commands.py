"""Every chat command in one registry; /help is generated from it.

Each handler takes the ``Context`` of one request and returns a ``Reply`` (or raises
``UserError`` with the reply text). A handler's first docstring line is its help text.
Generation itself is ``Core.generate``; the admin commands' storage work is the small
``fn(session, ...)`` functions at the bottom, run off the event loop by ``Database.run``.

    python -m bot console    # then /help
"""
from __future__ import annotations

import asyncio
import importlib.util
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.core import Context, Core, Reply, UserError, _chat_id, _user_id
from bot.text import THUMBS_DOWN, THUMBS_UP, prime_too_long
from genmodels.sampler import MAX_TEMPERATURE, MIN_TEMPERATURE
from genmodels.styles import Style
from storage.bandit import evidence
from storage.errors import NotFound
from storage.models import Outcome
from storage.settings import clear_temperature, set_temperature, usable_temperature
from storage.stats import latency_percentiles, style_stats, version_stats
from training.ngram import best_cached  # NumPy only: reads the cache, never computes

# Issue 6's registry operations (NumPy- and TensorFlow-free, safe in the chat process).
from training.registry_ops import list_versions, queue_retrain, rollback as registry_rollback

Handler = Callable[[Context], Awaitable[Reply]]


@dataclass(frozen=True)
class Command:
    name: str
    description: str
    handler: Handler
    admin: bool = False
    platforms: tuple[str, ...] = ()  # empty: every platform


def build_commands(core: Core) -> dict[str, Command]:
    """The registry: general commands, one per style command, then the admin ones."""
    h = Handlers(core)
    commands = [Command("start", "Say hello and list the commands", h.help),
                Command("help", "List the commands", h.help),
                Command("styles", "Every style with its description and variants", h.styles)]
    for name, styles in _by_command(core).items():
        commands.append(Command(name, _describe(styles), h.style_handler(name)))
    commands += [
        Command("temperature", "Show or set this chat's sampling temperature", h.temperature),
        Command("rate", "Rate the last text: /rate up or /rate down", h.rate,
                platforms=("console",)),
        Command("models", "Admins: model versions, val loss vs n-gram, ratings", h.models,
                True),
        Command("retrain", "Admins: queue a retrain of a style", h.retrain, True),
        Command("rollback", "Admins: serve a style's previous model again", h.rollback,
                True),
        Command("stats", "Admins: requests, ratings and latency per style and version",
                h.stats, True)]
    if all(importlib.util.find_spec(m) for m in ("matplotlib", "genmodels.neurons")):
        # Issue 7's renderer needs matplotlib, which a chat-only install may lack.
        commands.insert(-4, Command("neurons", "A picture of one neuron over a text: "
                                    "/neurons STYLE [text]", h.neurons))
    return {c.name: c for c in commands}


def example_command(core: Core) -> str:
    """A style command to show in examples: austen if there is one, else the first."""
    commands = [s.command for s in core.book.styles.values()]
    return "/" + ("austen" if "austen" in commands else commands[0])


def _by_command(core: Core) -> dict[str, list[Style]]:
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

    def __init__(self, core: Core):
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
                     f"{example_command(self.core)} It was")
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
                value, source = await self.core._temperature(ctx.request, style)
                return Reply(f"{style.label}: {value:g} ({describe_source(source)})")
            return await self.set_chat_temperature(ctx, parse_temperature(words[0]))
        style = self.find_style(" ".join(words[:-1]))
        if not self.core.is_admin(ctx.request):
            raise UserError("Sorry, only the bot's admins set a style's temperature; "
                            "/temperature VALUE sets this chat's.")
        style = style or self.need_style("", "/temperature STYLE VALUE")  # raises
        value = parse_temperature(words[-1])
        old = await self.core.db.run(_set_style_temperature, ctx.request, style.name, value)
        await self.core.temps.refresh()  # the next text here already uses it
        was = "unset" if old is None else f"{old:g}"
        return Reply(f"Temperature of {style.label} set to {value:g} (was {was}).")

    async def show_temperatures(self, ctx: Context) -> Reply:
        lines = ["Temperature here (higher is wilder; 0 always picks the likeliest "
                 "letter):"]
        learned = False
        for style in self.core.book.styles.values():
            value, source = await self.core._temperature(ctx.request, style)
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
        old = await self.core.db.run(_set_chat_temperature, ctx.request, value)
        await self.core.temps.refresh()
        was = "" if old is None else f" (was {old:g})"
        return Reply(f"Temperature in this chat set to {value:g}{was}; "
                     f"/temperature reset undoes it.")

    async def reset_temperature(self, ctx: Context, spec: str) -> Reply:
        if not spec:
            self.may_set_chat(ctx)
            old = await self.core.db.run(_clear_temperature, ctx.request, None)
            what = "this chat"
        else:
            if not self.core.is_admin(ctx.request):
                raise UserError("Sorry, only the bot's admins reset a style's temperature.")
            style = self.need_style(spec, "/temperature reset [STYLE]")
            old = await self.core.db.run(_clear_temperature, ctx.request, style.name)
            what = style.label
        await self.core.temps.refresh()
        if old is None:
            return Reply(f"No temperature was set for {what}; nothing to reset.")
        return Reply(f"Temperature for {what} reset (was {old:g}).")

    async def rate(self, ctx: Context) -> Reply:
        """/rate up|down rates the last text in this chat (console)."""
        value = {"up": 1, "+": 1, "+1": 1, "down": -1, "-": -1, "-1": -1}.get(
            ctx.args.strip().lower())
        if value is None:
            raise UserError("Usage: /rate up or /rate down.")
        req = ctx.request
        generation_id = self.core._last.get((req.platform, req.chat_id, req.user_id))
        if generation_id is None:
            raise UserError("Nothing to rate yet: ask for a text first.")
        return Reply(await self.core.rate(req, f"rate:{generation_id}:{value:+d}"))

    async def neurons(self, ctx: Context) -> Reply:
        """/neurons STYLE [text]: issue 7's picture of the most interpretable neuron."""
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
            async with self.core._slots:  # CPU work: shares the generation bound
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
        baselines = await asyncio.to_thread(_baselines, styles, self.core.book)
        lines = await self.core.db.run(_model_lines, [s.name for s in styles], served,
                                       baselines)
        return Reply("\n".join(lines))

    async def retrain(self, ctx: Context) -> Reply:
        style = self.need_style(ctx.args, "/retrain STYLE")
        run_id, new = await self.core.db.run(_queue_retrain, ctx.request, style)
        if not new:
            return Reply(f"A retrain of {style.label} is already queued or running "
                         f"(run {run_id}).")
        return Reply(f"Retrain of {style.label} queued (run {run_id}); the scheduler "
                     f"starts it soon.")

    async def rollback(self, ctx: Context) -> Reply:
        style = self.need_style(ctx.args, "/rollback STYLE")
        return Reply(await self.core.rollback(style.name))

    async def stats(self, ctx: Context) -> Reply:
        """Usage per style and version, then each style's temperature evidence."""
        core = self.core
        lines = await core.db.run(_stats_lines)
        if core.bandit is None:
            lines.append("Temperatures: learning from ratings is off ([bandit] enabled).")
        else:
            lines.append("Temperatures learned from ratings (per value: up/down, "
                         "approval, probability it is the best):")
            lines += await core.db.run(_evidence_lines, list(core.book.styles), core.rng,
                                       core.bandit)
        return Reply("\n".join(lines))


_SCOPES = {"chat": "set for this chat", "style": "set for this style by an admin",
           "global": "set for every style by an admin", "default": "default from config"}
_LEARNED = "bandit: "  # storage.bandit.choose_temperature's sources start so


def describe_source(source: str) -> str:
    """Where a temperature comes from, for users: "learned from ratings: exploring 0.9"."""
    if source.startswith(_LEARNED):
        return f"learned from ratings: {source[len(_LEARNED):]}"
    return _SCOPES.get(source, source)


# ------------------------------------------------------------- storage units of work

def _set_chat_temperature(session, request, value: float):
    return set_temperature(session, value, by_user_id=_user_id(session, request),
                           chat_id=_chat_id(session, request))


def _set_style_temperature(session, request, style: str, value: float):
    return set_temperature(session, value, by_user_id=_user_id(session, request),
                           style=style)


def _clear_temperature(session, request, style: str | None):
    who = _user_id(session, request)
    if style is None:
        return clear_temperature(session, by_user_id=who, chat_id=_chat_id(session, request))
    return clear_temperature(session, by_user_id=who, style=style)


def _queue_retrain(session, request, style: Style) -> tuple[int, bool]:
    run, new = queue_retrain(session, style.name, by_user_id=_user_id(session, request),
                             minutes=style.training.minutes)
    return run.id, new


def _baselines(styles: list[Style], book) -> dict[str, tuple[float, int] | None]:
    """Each style's best cached n-gram baseline (nats/char, order), or None."""
    return {style.name: best_cached(style, book) for style in styles}


def _versus(val_loss: float | None, baseline: tuple[float, int] | None) -> str:
    """A version's held-out loss against the baseline: the margin, positive when better."""
    if val_loss is None or baseline is None:
        return ""
    return f"; n-gram {baseline[0]:.4f}, margin {baseline[0] - val_loss:+.4f}"


def _model_lines(session, names: list[str], served: dict[str, str],
                 baselines: dict[str, tuple[float, int] | None]) -> list[str]:
    lines = []
    for name in names:
        lines.append(f"{name} (serving: {served.get(name, 'not loaded yet')})")
        base = baselines.get(name)
        lines.append(f"  n-gram baseline {base[0]:.4f} nats/char (order {base[1]})" if base
                     else f"  baseline not computed (python -m training baseline {name})")
        versions = list_versions(session, name, limit=5)
        lines += ["  " + v.line() + _versus(v.val_loss, base) for v in versions] \
            or ["  no versions registered"]
    return lines


def _stats_lines(session) -> list[str]:
    lines = []
    for by, rows in (("style", style_stats(session)), ("version", version_stats(session))):
        pct = {p.key: p for p in latency_percentiles(session, by=by)}
        lines.append(f"Per {by}: requests (ok/errors/rejected), ratings, latency p50/p95")
        for r in rows:
            p = pct.get(r.key)
            lat = f"{p.p50_ms:.0f}/{p.p95_ms:.0f} ms" if p else "no latency yet"
            lines.append(f"  {r.key}: {r.requests} ({r.ok}/{r.errors}/{r.rejected}), "
                         f"{THUMBS_UP}{r.up} {THUMBS_DOWN}{r.down}, {lat}")
        if not rows:
            lines.append("  nothing yet")
    return lines


def _evidence_lines(session, styles: list[str], rng, config) -> list[str]:
    return [line for style in styles
            for line in evidence(session, style, rng, config).lines()]


def rollback_version(session, style: str) -> str:
    """Re-activate the version before the active one (``Core.rollback``): DB and marker."""
    try:
        old, new = registry_rollback(session, style)
    except NotFound as exc:
        raise UserError(f"Cannot roll back: {exc}.") from None
    return f"{style}: now serving {new} again (was {old})."
