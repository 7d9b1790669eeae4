"""Storage speed and safety on SQLite and on the local PostgreSQL, in one run.

1. log: ``Database.log_request`` for one request with its generation, one at a time,
   from an asyncio loop as the bot does it (thread hop, user and chat ids: looked up
   on first sight, then cached; two inserts; commit), 50 people in 7 chats:
   p50 / p95 / mean in ms;
2. ratings: 1,000 rating writes at once (200 people x 5 changes of mind each), through
   the async ``Database`` and again from 8 threads with their own connections (real
   lock contention); then every person must have exactly one row holding their last
   vote, and every write must have completed.

SQLite uses a file in a temporary folder; PostgreSQL a temporary schema in ``--pg-url``
(default: ``STORAGE_TEST_PG_URL`` or postgres@127.0.0.1:5432/test), dropped afterwards;
it is skipped (figures null) if no server answers. Targets: log p50 <= 2 ms
on SQLite and <= 5 ms on PostgreSQL; ratings: none lost. Prints readable lines, then one
final JSON line. Exits 1 only if a rating was lost (a correctness failure).

    python bench/storage.py [--requests 500] [--pg-url URL]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make storage/ importable

from sqlalchemy import create_engine, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from storage.__main__ import upgrade  # noqa: E402
from storage.database import Database  # noqa: E402
from storage.log import get_or_create_user, log_request  # noqa: E402
from storage.models import Rating  # noqa: E402
from storage.ratings import rate  # noqa: E402
from storage.records import RequestRecord  # noqa: E402

TARGET_P50_MS = {"sqlite": 2.0, "postgresql": 5.0}
PEOPLE, CHANGES = 200, 5  # 1,000 rating writes
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def record(i: int) -> RequestRecord:
    return RequestRecord(
        platform="telegram", user_external_id=str(i % 50), chat_external_id=str(i % 7),
        user_name=f"user {i % 50}", chat_title="bench", command="austen", style="austen",
        prime="It is a truth universally", temperature=0.7, top_k=0, top_p=1.0, seed=i,
        max_chars=600, model_version="austen-20261122T080000-ab12", latency_ms=140,
        text="acknowledged, that a single man in possession of a good fortune " * 8,
        stop_reason="stop")


async def time_logging(db: Database, n: int) -> dict:
    for i in range(20):  # warm the pool, the caches and the statement cache
        await db.log_request(record(i))
    times = []
    for i in range(n):
        start = time.perf_counter()
        await db.log_request(record(i))
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 3),
            "p95_ms": round(times[int(0.95 * (n - 1))], 3),
            "mean_ms": round(statistics.fmean(times), 3), "n": n}


def last_vote(person: int) -> int:
    return 1 if person % 2 else -1


def votes(person: int) -> list[int]:
    return [last_vote(person) * (-1) ** (CHANGES - 1 - k) for k in range(CHANGES)]


def setup_raters(db: Database, tag: str) -> tuple[int, list[int]]:
    def setup(s):
        gen = log_request(s, record(0)).generation_id
        return gen, [get_or_create_user(s, "bench", f"{tag}{p}") for p in range(PEOPLE)]
    return db.run_sync(setup)


def verify(db: Database, gen: int, users: list[int], done: int, seconds: float) -> dict:
    with db.sessions() as s:
        rows = dict(s.execute(select(Rating.user_id, Rating.value)
                              .where(Rating.generation_id == gen)).all())
    wrong = sum(rows.get(u) != last_vote(p) for p, u in enumerate(users))
    lost = PEOPLE * CHANGES - done
    return {"writes": done, "rows": len(rows), "wrong_last_value": wrong, "lost": lost,
            "ok": lost == 0 and wrong == 0 and len(rows) == PEOPLE,
            "seconds": round(seconds, 3)}


async def ratings_async(db: Database) -> dict:
    gen, users = setup_raters(db, "a")
    done = 0

    async def person(p: int) -> None:
        nonlocal done
        for value in votes(p):
            await db.run(rate, gen, users[p], value)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(person(p) for p in range(PEOPLE)))
    return verify(db, gen, users, done, time.perf_counter() - start)


def ratings_threads(db: Database, threads: int = 8) -> dict:
    gen, users = setup_raters(db, "t")

    def person(p: int) -> int:
        for value in votes(p):
            with db.sessions.begin() as s:  # own connection from the pool, own commit
                rate(s, gen, users[p], value)
        return CHANGES

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        done = sum(pool.map(person, range(PEOPLE)))
    return verify(db, gen, users, done, time.perf_counter() - start)


async def bench_backend(name: str, url: str, n: int) -> dict:
    upgrade(url)
    db = Database(url, spool=None, workers=8)
    try:
        log = await time_logging(db, n)
        print(f"{name}: log request+generation p50 {log['p50_ms']} ms, p95 "
              f"{log['p95_ms']} ms (n={n}; target p50 <= {TARGET_P50_MS[name]:g} ms)")
        via_async = await ratings_async(db)
        print(f"{name}: 1,000 concurrent ratings via Database: {json.dumps(via_async)}")
        # The engine's pool has room for 8 connections on both backends.
        via_threads = ratings_threads(db)
        print(f"{name}: 1,000 ratings from 8 threads: {json.dumps(via_threads)}")
    finally:
        db.close()
    return {"log": log, "ratings_async": via_async, "ratings_threads": via_threads}


def pg_schema(base: str) -> tuple[str | None, str | None]:
    """A URL pointing at a new empty schema, and the schema; (None, None) if no server."""
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        engine = create_engine(base, connect_args={"connect_timeout": 3})
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
    except Exception as exc:  # any failure to connect means: skip PostgreSQL
        print(f"postgresql: skipped ({str(exc).splitlines()[0]})")
        return None, None
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), schema


def drop_schema(base: str, schema: str) -> None:
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def summary(results: dict) -> dict:
    out = {"bench": "storage", "machine": platform.machine(), "cpus": os.cpu_count(),
           "targets": {}}
    for name in ("sqlite", "postgresql"):
        r = results.get(name)
        out[f"{name}_log_p50_ms"] = r and r["log"]["p50_ms"]
        out[f"{name}_log_p95_ms"] = r and r["log"]["p95_ms"]
        out[f"{name}_ratings_async_ok"] = r and r["ratings_async"]["ok"]
        out[f"{name}_ratings_threads_ok"] = r and r["ratings_threads"]["ok"]
        out[f"{name}_ratings_lost"] = r and (r["ratings_async"]["lost"]
                                             + r["ratings_threads"]["lost"])
        if r:
            out["targets"][f"{name}_log_p50_ms<={TARGET_P50_MS[name]:g}"] = (
                r["log"]["p50_ms"] <= TARGET_P50_MS[name])
            out["targets"][f"{name}_1000_ratings_none_lost"] = (
                r["ratings_async"]["ok"] and r["ratings_threads"]["ok"])
    out["all_targets_met"] = all(out["targets"].values())
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=500, help="requests to time per backend")
    p.add_argument("--pg-url", default=os.environ.get("STORAGE_TEST_PG_URL") or DEFAULT_PG)
    args = p.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = asyncio.run(
            bench_backend("sqlite", f"sqlite:///{tmp}/bench.db", args.requests))
    url, schema = pg_schema(args.pg_url)
    if url:
        try:
            results["postgresql"] = asyncio.run(
                bench_backend("postgresql", url, args.requests))
        finally:
            drop_schema(args.pg_url, schema)
    result = summary(results)
    print(json.dumps(result))
    if any(result[f"{n}_ratings_lost"] for n in ("sqlite", "postgresql")):
        sys.exit(1)
    return result


if __name__ == "__main__":
    main()
