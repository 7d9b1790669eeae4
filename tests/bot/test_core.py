"""The chat core without any platform: commands, admin checks, limits, ratings, logging.

Real storage (SQLite) and the real in-process engine on tiny random models; every
request, rejected ones included, must end up in the database.
"""
from __future__ import annotations

import asyncio

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from bot.adapters.console import LastText
from bot.core import Reply, Request
from storage.database import Database
from storage.log import get_or_create_chat
from storage.models import Rating, Request as RequestRow, Setting, SettingChange, TrainingRun
from storage.settings import _key as setting_key
from storage.versions import promote_model_version, register_model_version

USER = "42"
ADMIN = "1"  # an admin in the chat fixture's settings
RANGE = "The temperature must be 0 (always the likeliest letter) or a number from 0.05 to 5"


def req(text: str, user: str = USER, chat: str = "c1", **kw) -> Request:
    return Request("telegram", chat, user, user_name=f"u{user}", text=text,
                   bot_username="stylebot", **kw)


def test_generation_carries_a_rating_and_everything_is_logged(chat):
    async def scenario():
        core = chat.core()
        reply = await core.handle(req("/tiny the cat"))
        assert reply.text.startswith("the cat") and reply.rate_generation is not None
        fox = await core.handle(req("/fable fox"))
        assert fox.rate_generation not in (None, reply.rate_generation)
        owl = await core.handle(req("/fable owl"))  # no artifact
        assert owl.text == "Sorry, the fable_owl model is unavailable."
        assert owl.rate_generation is None
        unknown = await core.handle(req("/fable bear"))
        assert "choose one of fox, owl" in unknown.text
        primed = await core.handle(req("/fable a dog ran"))  # no plain fable style
        assert "choose one of fox, owl" in primed.text
        assert await core.rate(req(""), f"rate:{reply.rate_generation}:+1") == \
            "Thanks for the \N{THUMBS UP SIGN}!"
        assert (await core.rate(req(""), f"rate:{reply.rate_generation}:-1")).startswith(
            "Changed to")
    chat.run(scenario)
    rows = chat.rows(RequestRow)
    assert len(rows) == 5
    outcomes = sorted(r.outcome for r in rows)
    assert outcomes == ["bad_input", "bad_input", "error", "ok", "ok"]
    (rating,) = chat.rows(Rating)
    assert rating.value == -1  # the second tap replaced the first


def test_bad_input_gets_one_clear_line_and_is_logged(chat):
    async def scenario():
        core = chat.core(max_prime_chars=50)
        texts = {
            "/nosuch": "Sorry, I do not know /nosuch.",
            "": "Start with a command",
            "hello there": "Start with a command",
            "/temperature banana": RANGE,
            "/temperature 1e308": RANGE,
            "/temperature nan": RANGE,
            "/temperature -1": RANGE,
            "/temperature 0.01": RANGE,
            "/tiny " + "x" * 10_000: "That text is 10,000 characters long; I read at most 50",
            "/rate sideways": "Sorry, I do not know /rate.",  # console-only
        }
        for text, expected in texts.items():
            reply = await core.handle(req(text))
            assert reply.text.startswith(expected), (text, reply.text[:80])
            assert "Traceback" not in reply.text
        silent = await core.handle(req("/tiny@otherbot the cat"))
        assert silent.silent and not silent.text
        addressed = await core.handle(req("/tiny@StyleBot the"))  # case-insensitive
        assert addressed.text.startswith("the")
        emoji = await core.handle(req("/tiny the \N{GRINNING FACE} \u05e9\u05dc\u05d5\u05dd"))
        assert emoji.rate_generation is not None
        assert "left out characters this model has never seen" in emoji.text
        for data in ("rate:abc:+1", "rate:1:+2", "nonsense", "", "rate:-5:+1",
                     "rate:99999999999999999999:+1"):
            assert await core.rate(req(""), data) == "Sorry, I do not recognise that button."
        assert "no longer have that text" in await core.rate(req(""), "rate:999999:+1")
    chat.run(scenario)
    assert chat.count(RequestRow) == 12  # the other bot's command is not ours to log


def test_admin_commands_are_refused_politely_and_recorded(chat):
    async def scenario():
        core = chat.core()
        for text in ("/models", "/retrain tiny", "/rollback tiny", "/stats",
                     "/temperature tiny 0.9", "/temperature reset tiny"):
            reply = await core.handle(req(text))
            assert reply.text.startswith("Sorry, "), (text, reply.text)
            assert "admins" in reply.text
        help_user = await core.handle(req("/help"))
        assert "/tiny" in help_user.text and "/stats" not in help_user.text
        admin = lambda text: core.handle(req(text, user=ADMIN))  # noqa: E731
        assert "/stats" in (await admin("/help")).text
        assert (await admin("/temperature fable fox 0.9")).text == \
            "Temperature of fable fox set to 0.9 (was unset)."
        assert (await admin("/temperature fable_fox")).text == \
            "fable fox: 0.9 (set for this style by an admin)"
        assert (await admin("/temperature reset fable_fox")).text == \
            "Temperature for fable fox reset (was 0.9)."
        assert (await admin("/retrain tiny")).text.startswith("Retrain of tiny queued")
        assert (await admin("/retrain tiny")).text.startswith(  # pressed twice: one run
            "A retrain of tiny is already queued")
        assert (await admin("/rollback tiny")).text == \
            "Cannot roll back: tiny has no active registered version to roll back from."
        assert "Usage: /retrain STYLE" in (await admin("/retrain")).text
        await admin("/tiny the")
        stats = (await admin("/stats")).text
        assert "tiny: " in stats and " ms" in stats
        models = (await admin("/models tiny")).text
        assert models.startswith("tiny (serving: tiny-test-0)\n  ")  # then the baseline
        assert models.endswith("\n  no versions registered")  # (tests/bot/test_models_baseline.py)
    chat.run(scenario)
    (run,) = chat.rows(TrainingRun)
    assert (run.style, run.trigger, run.status) == ("tiny", "admin", "queued")
    assert run.requested_by_user_id
    changes = chat.rows(SettingChange)
    assert [(c.style, c.old_value, c.new_value) for c in changes] == [
        ("fable_fox", None, 0.9), ("fable_fox", 0.9, None)]
    assert all(c.changed_by_user_id for c in changes)


def test_chat_temperature_applies_here_only_and_can_be_forbidden(chat):
    async def scenario():
        core = chat.core()
        assert (await core.handle(req("/temperature 0"))).text.startswith(
            "Temperature in this chat set to 0;")
        shown = (await core.handle(req("/temperature"))).text
        assert "/tiny: 0 (set for this chat)" in shown
        other = (await core.handle(req("/temperature", chat="c2"))).text
        assert "default from config" not in other and "(learned from ratings: " in other
        greedy = [await core.handle(req("/tiny the")) for _ in range(2)]
        assert greedy[0].text == greedy[1].text  # temperature 0: always the likeliest
        assert "reset (was 0)" in (await core.handle(req("/temperature reset"))).text
        strict = chat.core(chat_temperature_for_all=False)
        refused = await strict.handle(req("/temperature 0.5"))
        assert refused.text == "Sorry, only the bot's admins change the temperature here."
        allowed = await strict.handle(req("/temperature 0.5", user=ADMIN))
        assert allowed.text.startswith("Temperature in this chat set to 0.5")
    chat.run(scenario)


def test_temperatures_the_sampler_refuses_are_refused_when_set(chat):
    async def scenario():
        core = chat.core()
        admin = lambda text: core.handle(req(text, user=ADMIN))  # noqa: E731
        for text in ("/temperature 0.01", "/temperature 0.049", "/temperature 1e-300",
                     "/temperature 5.01"):
            assert (await core.handle(req(text))).text.startswith(RANGE), text
        for text in ("/temperature tiny 0.01", "/temperature fable fox 1e-300"):
            assert (await admin(text)).text.startswith(RANGE), text
        assert (await core.handle(req("/temperature 0.05"))).text.startswith(
            "Temperature in this chat set to 0.05;")  # the bounds themselves are fine
        assert (await admin("/temperature tiny 5")).text.startswith(
            "Temperature of tiny set to 5 ")
        assert (await core.handle(req("/tiny the"))).rate_generation is not None
    chat.run(scenario)
    changes = chat.rows(SettingChange)
    assert sorted(c.new_value for c in changes) == [0.05, 5.0]


def test_a_stored_temperature_the_sampler_refuses_gets_a_clear_reply(chat):
    # A row stored before the sampler's lower bound existed (or by another tool): the
    # generation raises ValueError, which must reach the user as one clear line.
    engine = create_engine(chat.url)
    with Session(engine) as session, session.begin():
        chat_id = get_or_create_chat(session, "telegram", "c1")
        session.add(Setting(key=setting_key("temperature", "chat", None, chat_id),
                            name="temperature", scope="chat", chat_id=chat_id,
                            value=0.01))
        session.add(Setting(key=setting_key("temperature", "style", "fable_fox", None),
                            name="temperature", scope="style", style="fable_fox",
                            value=1e-300))
    engine.dispose()

    async def scenario():
        core = chat.core()
        reply = await core.handle(req("/tiny the"))
        assert reply.text == (
            "Sorry, I cannot write with these settings: temperature must be 0 (greedy) "
            "or between 0.05 and 5, got 0.01. /temperature reset goes back to the "
            "default."), reply.text
        assert reply.rate_generation is None
        other = await core.handle(req("/tiny the", chat="c2"))  # another chat: fine
        assert other.rate_generation is not None
        fox = await core.handle(req("/fable fox", chat="c2"))  # a style's: admins' to fix
        assert fox.text == (
            "Sorry, I cannot write with these settings: temperature must be 0 (greedy) "
            "or between 0.05 and 5, got 1e-300. Please tell the bot's admins."), fox.text
        assert "reset (was 0.01)" in (await core.handle(req("/temperature reset"))).text
        assert (await core.handle(req("/tiny the"))).rate_generation is not None
    chat.run(scenario)
    failed = chat.rows(RequestRow, RequestRow.outcome == "bad_input")
    assert [(r.style, r.temperature) for r in failed] == [("tiny", 0.01),
                                                           ("fable_fox", 1e-300)]
    assert "got 0.01" in failed[0].error


def test_flooding_gets_the_slow_down_reply_and_is_logged(chat):
    async def scenario():
        core = chat.core(rate_burst=3, rate_per_minute=1)
        replies = [await core.handle(req("/help")) for _ in range(6)]
        slow = [r for r in replies if r.text.startswith("Slow down a little")]
        assert len(slow) == 1 and not slow[0].silent  # once per cool-down
        assert [r.silent for r in replies] == [False] * 4 + [True] * 2
        other_user = await core.handle(req("/help", user="43"))
        assert not other_user.text.startswith("Slow down")
        admin = [await core.handle(req("/help", user=ADMIN)) for _ in range(6)]
        assert not any(r.text.startswith("Slow down") for r in admin)
    chat.run(scenario)
    assert chat.count(RequestRow, RequestRow.outcome == "rate_limited") == 3
    assert chat.count(RequestRow) == 13


def test_a_flood_gets_one_slow_down_per_cool_down_and_every_attempt_is_logged(chat):
    async def scenario():
        core = chat.core(rate_burst=5, rate_per_minute=12)  # config.toml's defaults
        clock = [1000.0]
        core.limiter.clock = lambda: clock[0]
        replies = []
        for _ in range(30):  # 30 commands in 2 s
            replies.append(await core.handle(req("/help")))
            clock[0] += 2 / 30
        slow = [r for r in replies if r.text.startswith("Slow down a little")]
        assert len(slow) == 1 and sum(not r.silent for r in replies) == 5 + 1
        clock[0] += 5.0  # the cool-down (one token: 5 s) is over: a token, then refusals
        again = [await core.handle(req("/help")) for _ in range(4)]
        assert [r.silent for r in again] == [False, False, True, True]
        assert again[1].text.startswith("Slow down a little")
        other = await core.handle(req("/help", user="43"))  # per user, not per chat
        assert not other.silent and not other.text.startswith("Slow down")
    chat.run(scenario)
    assert chat.count(RequestRow) == 30 + 4 + 1
    assert chat.count(RequestRow, RequestRow.outcome == "rate_limited") == 25 + 3


class Gated:
    """The real engine client behind a gate, so a test decides when generations finish."""

    def __init__(self, client):
        self.client, self.gate = client, asyncio.Event()

    async def generate(self, *args):
        await self.gate.wait()
        return await self.client.generate(*args)

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_a_burst_waits_its_turn_and_past_the_bound_gets_busy(chat):
    async def scenario():
        core = chat.core(max_in_flight=2, max_waiting=3)
        core.client = gated = Gated(core.client)
        tasks = [asyncio.create_task(core.handle(req("/tiny the", user=str(100 + i))))
                 for i in range(8)]
        for _ in range(3000):  # until 2 run + 3 wait and the other 3 were answered
            if sum(t.done() for t in tasks) == 3 and core._queued == 5:
                break
            await asyncio.sleep(0.01)
        busy = [t.result().text for t in tasks if t.done()]
        assert busy == ["Sorry, I am busy writing for others; try again in a moment."] * 3
        gated.gate.set()
        replies = await asyncio.gather(*tasks)
        assert sum(r.rate_generation is not None for r in replies) == 5
    chat.run(scenario)
    assert chat.count(RequestRow, RequestRow.outcome == "busy") == 3
    assert chat.count(RequestRow) == 8


def test_a_rating_from_before_a_restart_still_counts(chat):
    async def scenario():
        first = chat.core()
        reply = await first.handle(req("/tiny the"))
        await first.close()
        second = chat.core()  # a new process: nothing in memory
        assert (await second.rate(req("", user="77"), f"rate:{reply.rate_generation}:+1")
                ).startswith("Thanks")
    chat.run(scenario)
    assert chat.count(Rating) == 1


def test_console_rate_rates_the_last_text(chat):
    async def scenario():
        core = chat.core()
        ratings = LastText(core)  # what the console adapter adds to the core
        core.add_command(ratings.command())

        async def console(text: str) -> Reply:
            request = Request("console", "local", "local", text=text)
            reply = await core.handle(request)
            ratings.saw(request, reply)
            return reply
        assert (await console("/rate up")).text == "Nothing to rate yet: ask for a text first."
        await console("/tiny the")
        assert (await console("/rate up")).text.startswith("Thanks")
        assert (await console("/rate down")).text.startswith("Changed to")
        assert (await console("/rate")).text == "Usage: /rate up or /rate down."
        menu = core.commands()
        assert ("rate", "Rate the last text: /rate up or /rate down") not in menu
        assert ("tiny", "A tiny test style") in menu
        assert ("fable", "A fox fable [fox|owl]") in menu
        assert list(core.registry).index("rate") < list(core.registry).index("models")
        telegram = await core.handle(req("/rate up"))
        assert telegram.text.startswith("Sorry, I do not know /rate.")
    chat.run(scenario)
    (rating,) = chat.rows(Rating)
    assert rating.value == -1


def test_a_storage_outage_still_answers_and_spools_the_log(chat, tmp_path):
    async def scenario():
        core = chat.core()
        core.db.close()
        # A database that cannot be opened: the request is answered and spooled.
        core.db = Database(f"sqlite:///{tmp_path}/missing/dir/x.db", spool=chat.spool,
                           retries=0)
        reply = await core.handle(req("/help"))
        assert "/tiny" in reply.text
    chat.run(scenario)
    assert chat.spool.read_text(encoding="utf-8").count('"command": "help"') == 1


def test_rollback_and_models_use_the_registry(chat, tmp_path):
    registry = tmp_path / "registry"
    for seed, version in enumerate(("tiny-v1", "tiny-v2")):
        chat.setup.save_artifact("tiny", seed=seed).save(registry / "tiny" / version)

    async def scenario():
        core = chat.core()
        for version in ("tiny-v1", "tiny-v2"):
            await core.db.run(_register_and_promote, version, registry / "tiny" / version)
        models = (await core.handle(req("/models tiny", user=ADMIN))).text
        assert "* tiny-v2" in models and "tiny-v1" in models
        reply = await core.handle(req("/rollback tiny", user=ADMIN))
        assert reply.text == "tiny: now serving tiny-v1 again (was tiny-v2)."
    chat.run(scenario)
    assert (registry / "tiny" / "ACTIVE").read_text().strip() == "tiny-v1"


def _register_and_promote(session, version, path):
    register_model_version(session, style="tiny", version=version, artifact_path=str(path),
                           val_loss=1.5)
    promote_model_version(session, version)


class Raising:
    """The real client, except that generate raises what the test says."""

    def __init__(self, client, exc):
        self.client, self.exc = client, exc

    async def generate(self, *args):
        raise self.exc

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_client_failures_get_a_short_reply_and_are_logged(chat):
    from serving.client import Busy

    async def scenario():
        core = chat.core()
        real = core.client
        core.client = Raising(real, Busy("queue full"))
        assert (await core.handle(req("/tiny the"))).text == \
            "Sorry, I am busy writing for others; try again in a moment."
        core.client = Raising(real, TimeoutError("inference service timed out"))
        reply = await core.handle(req("/tiny the"))
        assert reply.text.startswith("Sorry, something went wrong on my side.")
        assert reply.rate_generation is None
    chat.run(scenario)
    outcomes = sorted(r.outcome for r in chat.rows(RequestRow))
    assert outcomes == ["busy", "error"]


def test_neurons_replies_with_a_picture(chat):
    async def scenario():
        core = chat.core()
        reply = await core.handle(req("/neurons fable fox the cat sat on the mat"))
        assert reply.photo is not None and reply.photo.startswith(b"\x89PNG")
        assert reply.text.startswith("fable_fox: ") and reply.rate_generation is None
        owl = await core.handle(req("/neurons fable_owl"))
        assert owl.text == "Sorry, the fable_owl model is unavailable." and owl.photo is None
        assert (await core.handle(req("/neurons"))).text.startswith(
            "Usage: /neurons STYLE [text]")
    chat.run(scenario)
    outcomes = sorted(r.outcome for r in chat.rows(RequestRow))
    assert outcomes == ["bad_input", "error", "ok"]
