"""Chat latency and a burst of users, through the real Telegram library and a fake Bot API.

Measures, in one run, with the bot wired as in production (``Core`` with the real
storage on a fresh SQLite file, the default in-process generation client, the real
python-telegram-bot ``Application`` long-polling ``tests/bot/fake_telegram.py`` on
127.0.0.1):

1. latency: one user asks ``/STYLE`` for a 300-character reply, ``--repeats`` times in
   a row; the time from queuing the update to the server receiving sendMessage (so it
   includes getUpdates, the core, the database, generation and the reply), p50 / p95,
   and the generation part alone (``latency_ms`` in the log);
2. burst: ``--users`` different users send ``/STYLE`` at the same moment; every one
   must get a reply (text with rating buttons, or a "busy" answer), and every request
   must be in the database;
3. the seed recipe (``bench/seed_recipe.py``): ``model.predict`` over a one-hot
   60-character window per character, 300 characters, in the same run (TensorFlow is
   imported last; ``--no-seed`` skips it).

The style's replies are forced to exactly 300 characters (``stop = "none"``,
``default_chars = 300``) so every run writes the same amount. Timings are measured, never asserted. One final JSON line.

    python bench/chat.py [--style austen] [--repeats 30] [--users 100] [--no-seed]
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: bot/, genmodels/, storage/ importable
sys.path.insert(0, str(ROOT / "tests" / "bot"))  # the fake Telegram server

from fake_telegram import TOKEN, FakeTelegram  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402

import genmodels  # noqa: E402,F401  first: it sets the BLAS thread default before NumPy loads
from bot.adapters import telegram  # noqa: E402
from bot.core import Core  # noqa: E402
from storage.__main__ import upgrade  # noqa: E402
from storage.database import Database  # noqa: E402
from storage.models import Request as RequestRow  # noqa: E402

TARGETS = {"p50_ms_max": 150, "burst_users": 100, "burst_lost_max": 0}
REPLY_CHARS = 300


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    pos = (len(values) - 1) * q
    low = int(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


def build_core(style_name: str, db_url: str) -> Core:
    core = Core.from_config(db=Database(db_url, spool=None))
    style = core.book.get(style_name)
    fixed = dataclasses.replace(style, stop="none", default_chars=REPLY_CHARS)
    core.book = dataclasses.replace(core.book, styles={**core.book.styles, style_name: fixed})
    # One user sends --repeats requests in a row: lift the per-user limit for the bench.
    core.settings = dataclasses.replace(core.settings, rate_burst=10_000,
                                        rate_per_minute=10_000)
    core.limiter.burst = core.limiter.rate = 10_000.0
    return core


async def ask(server: FakeTelegram, chat_id: int, command: str) -> tuple[float, dict]:
    """Queue one message; (ms until the reply reached the server, the reply)."""
    start = time.perf_counter()
    server.message(chat_id, chat_id, command)
    (reply,) = await server.wait_for("sendMessage", lambda p: p.get("chat_id") == chat_id,
                                     timeout=600)
    at = next(c.at for c in server.calls if c.method == "sendMessage"
              and c.params.get("chat_id") == chat_id)
    return (at - start) * 1000.0, reply


async def latency(server: FakeTelegram, command: str, repeats: int) -> dict:
    for warm in range(3):  # model load, first queries, JIT-free but caches warm
        await ask(server, 10_000 + warm, command)
    times, lengths = [], []
    for i in range(repeats):
        ms, reply = await ask(server, 20_000 + i, command)
        times.append(ms)
        lengths.append(len(reply["text"]))
    return {"repeats": repeats, "p50_ms": round(percentile(times, 0.5), 1),
            "p95_ms": round(percentile(times, 0.95), 1), "min_ms": round(min(times), 1),
            "reply_chars_median": statistics.median(lengths)}


async def burst(server: FakeTelegram, command: str, users: int) -> dict:
    start = time.perf_counter()
    chats = [50_000 + i for i in range(users)]
    for chat_id in chats:
        server.message(chat_id, chat_id, command)
    wanted = set(chats)
    replies = await server.wait_for("sendMessage", lambda p: p.get("chat_id") in wanted,
                                    count=users, timeout=900)
    wall = time.perf_counter() - start
    at = {c.params["chat_id"]: (c.at - start) * 1000.0 for c in server.calls
          if c.method == "sendMessage" and c.params.get("chat_id") in wanted}
    generated = sum("reply_markup" in r for r in replies)
    return {"users": users, "replies": len({r["chat_id"] for r in replies}),
            "generated": generated, "busy_or_other": len(replies) - generated,
            "wall_s": round(wall, 2), "reply_p50_ms": round(percentile(list(at.values()), .5)),
            "reply_p95_ms": round(percentile(list(at.values()), .95))}


def logged(db_url: str) -> dict:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            n = conn.execute(select(func.count()).select_from(RequestRow)).scalar_one()
            gen = [r[0] for r in conn.execute(text(
                "SELECT latency_ms FROM requests WHERE outcome = 'ok' AND "
                "chat_id IN (SELECT id FROM chats WHERE external_id LIKE '2____')"))]
    finally:
        engine.dispose()
    return {"requests_logged": n,
            "generation_p50_ms": percentile(gen, 0.5) if gen else None}


def seed_recipe_ms(n_chars: int) -> dict:
    from bench import seed_recipe
    from genmodels.vocab import Vocabulary

    vocab = Vocabulary.from_text((ROOT / "data" / "corpora" / "austen.txt").read_text(
        encoding="utf-8")[:200_000])
    model = seed_recipe.build_model(len(vocab))
    prime = [0] * seed_recipe.MAXLEN
    seed_recipe.generate(model, vocab.chars, prime, 1)  # traces predict once
    _, secs = seed_recipe.generate(model, vocab.chars, prime, n_chars)
    return {"chars": n_chars, "ms": round(secs * 1000), "model": "untrained LSTM(128)"}


async def run(args, db_url: str) -> dict:
    core = build_core(args.style, db_url)
    command = "/" + core.book.get(args.style).label
    server = await FakeTelegram().start()
    stop = asyncio.Event()
    task = asyncio.create_task(telegram.serve(core, TOKEN, stop, base_url=server.base_url))
    try:
        await server.wait_for("setMyCommands")
        lat = await latency(server, command, args.repeats)
        bur = await burst(server, command, args.users)
    finally:
        stop.set()
        await task
        await server.stop()
        await core.close()
    return {"latency": lat, "burst": bur, "command": command}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", default="shakespeare")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--no-seed", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{tmp}/bench.db"
        upgrade(db_url)
        result = asyncio.run(run(args, db_url))
        result |= logged(db_url)
    expected = 3 + args.repeats + args.users
    result["requests_expected"] = expected
    result["lost"] = expected - result["requests_logged"] + (
        args.users - result["burst"]["replies"])
    if not args.no_seed:
        result["seed_recipe_300_chars"] = seed_recipe_ms(REPLY_CHARS)
    lat = result["latency"]
    print(f"{result['command']} ({REPLY_CHARS} chars) via fake Telegram: p50 {lat['p50_ms']} ms,"
          f" p95 {lat['p95_ms']} ms (generation alone p50 {result['generation_p50_ms']} ms)")
    b = result["burst"]
    print(f"burst of {b['users']} users: {b['replies']} replies ({b['generated']} texts), "
          f"{b['wall_s']} s; {result['requests_logged']}/{expected} requests logged")
    summary = {"bench": "chat", "style": args.style, "reply_chars": REPLY_CHARS, **result, "targets": TARGETS,
               "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                           "load_average_1min": round(os.getloadavg()[0], 2)}}
    print(json.dumps(summary, ensure_ascii=False))
    return summary


if __name__ == "__main__":
    main()
