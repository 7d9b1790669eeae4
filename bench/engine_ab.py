"""Is the in-process engine slower than at an earlier commit? Runs the two trees' engines
in turn, many times, and compares them level by level.

    .venv/bin/python bench/engine_ab.py --old 18b78a5            # 8 pairs, ~3 minutes
    .venv/bin/python bench/engine_ab.py --old 18b78a5 --pairs 12 --requests 256
    .venv/bin/python bench/engine_ab.py --old 18b78a5 --chat     # each tree's chat.py

One run is a fresh child process that imports one tree's engine (the earlier commit is
checked out with ``git worktree`` into a temporary folder; PYTHONPATH points there),
loads ``models/austen`` with the NumPy backend, warms up for 3 s (so the BLAS thread
policy has decided) and then sends ``--requests`` requests of 300 characters (stop rule
off, temperature 0.8, seeds 0..n-1) at each concurrency, closed loop. It reports the
characters per second of wall time and the CPU milliseconds per 1,000 characters
(``time.process_time``, every thread of the child). Runs alternate old/new/new/old so a
drift of the machine falls on both trees alike. Single runs move by up to 20% on this
machine: the medians over the pairs and the share of pairs each tree won are the result.
Prints one line per run and one final JSON line. Run it alone: a training beside it
measures nothing.

With ``--chat`` a run is instead each tree's own ``bench/chat.py --no-seed`` (a reply of
300 characters through python-telegram-bot, 30 times, then 100 users at once): its
p50 / p95 latency and the burst's wall time, compared the same way (lower is better).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEVELS = (1, 8, 64)
CHARS = 300
MODEL = ROOT / "models" / "austen"


def child(requests: int) -> None:
    """One run in this process: whichever tree PYTHONPATH names comes first."""
    # This script's folder holds bench/serving.py, which would shadow the package.
    sys.path.remove(str(Path(__file__).resolve().parent))
    import genmodels  # noqa: F401  first: the BLAS thread default
    from genmodels.sampler import SamplingParams
    try:
        from serving.engine import Engine, EngineClient
    except ImportError:  # before the serving package existed
        from genmodels.engine import Engine, EngineClient  # type: ignore[no-redef]

    prime = (ROOT / "data" / "corpora" / "austen.txt").read_text(encoding="utf-8")[:60]

    async def main() -> dict:
        client = EngineClient(Engine(paths={"austen": MODEL}, backend="numpy"))

        async def generate(seed: int) -> int:
            result = await client.generate("austen", prime, SamplingParams(
                seed=seed, max_chars=CHARS, stop="none", temperature=0.8))
            # Older trees call the sample "generation".
            return len((getattr(result, "sample", None) or result.generation).text)

        warm_until = time.perf_counter() + 3.0
        while time.perf_counter() < warm_until:
            await asyncio.gather(generate(0), generate(1))
        out = {f"c{level}": await closed_loop(generate, level, requests)
               for level in LEVELS}
        await client.close()
        return out

    print(json.dumps(asyncio.run(main())))


async def closed_loop(generate, level: int, requests: int) -> dict:
    """``requests`` requests, ``level`` in flight: characters, chars/s and CPU ms per
    1,000 chars."""
    seeds, chars = iter(range(requests)), 0

    async def worker() -> None:
        nonlocal chars
        for seed in seeds:
            n = await generate(seed)  # not "chars += await": that reads chars first
            chars += n

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(level)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"chars": chars, "chars_per_s": round(chars / wall),
            "cpu_ms_per_1k_chars": round(cpu * 1e6 / chars, 2)}


def run(tree: Path, requests: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, __file__, "--child", "--requests", str(requests)],
                          cwd=tree, env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


CHAT_FIGURES = {"p50_ms": ("latency", "p50_ms"), "p95_ms": ("latency", "p95_ms"),
                "burst_wall_s": ("burst", "wall_s")}


def run_chat(tree: Path) -> dict:
    """The tree's own bench/chat.py: the figures of ``CHAT_FIGURES``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, "bench/chat.py", "--no-seed"], cwd=tree, env=env,
                          capture_output=True, text=True, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {name: out[table][key] for name, (table, key) in CHAT_FIGURES.items()}


def chat_summary(old: list[dict], new: list[dict]) -> dict:
    """Per figure: each tree's median and the pairs in which the new tree was lower."""
    return {name: {"median_old": round(statistics.median(r[name] for r in old), 3),
                   "median_new": round(statistics.median(r[name] for r in new), 3),
                   "pairs_new_lower": sum(n[name] < o[name]
                                          for o, n in zip(old, new, strict=True))}
            for name in CHAT_FIGURES}


def summary(old: list[dict], new: list[dict]) -> dict:
    out = {}
    for level in LEVELS:
        key = f"c{level}"
        rate_old = [r[key]["chars_per_s"] for r in old]
        rate_new = [r[key]["chars_per_s"] for r in new]
        cpu_old = [r[key]["cpu_ms_per_1k_chars"] for r in old]
        cpu_new = [r[key]["cpu_ms_per_1k_chars"] for r in new]
        out[key] = {
            "chars_per_s_median_old": round(statistics.median(rate_old)),
            "chars_per_s_median_new": round(statistics.median(rate_new)),
            "ratio_new_over_old": round(statistics.median(rate_new)
                                        / statistics.median(rate_old), 3),
            "pairs_new_faster": sum(n > o for o, n in zip(rate_old, rate_new, strict=True)),
            "cpu_ms_per_1k_chars_median_old": round(statistics.median(cpu_old), 2),
            "cpu_ms_per_1k_chars_median_new": round(statistics.median(cpu_new), 2),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--old", help="the earlier commit to compare with")
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--requests", type=int, default=128, help="requests at each level")
    p.add_argument("--chat", action="store_true",
                   help="compare each tree's bench/chat.py instead of the engine")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.requests)
        return 0
    if not args.old:
        p.error("give --old REV")
    # Here, not at the top: a child must import nothing from this tree but its engine.
    sys.path.insert(0, str(ROOT))
    from bench.suite import checkout

    old: list[dict] = []
    new: list[dict] = []
    with checkout(args.old) as worktree:
        for i in range(args.pairs):
            order = [("old", worktree), ("new", ROOT)]
            for label, tree in order if i % 2 == 0 else order[::-1]:
                r = run_chat(tree) if args.chat else run(tree, args.requests)
                (old if label == "old" else new).append(r)
                print(label, " ".join(
                    f"{k} {v}" if args.chat else
                    f"{k} {v['chars_per_s']:>6,} chars/s "
                    f"{v['cpu_ms_per_1k_chars']:>6.2f} cpu-ms/1k" for k, v in r.items()),
                    flush=True)
    if args.chat:
        print(json.dumps({"old": args.old, "pairs": args.pairs, "bench": "chat",
                          **chat_summary(old, new)}))
    else:
        print(json.dumps({"old": args.old, "pairs": args.pairs, "requests": args.requests,
                          "chars": CHARS, "model": MODEL.name, **summary(old, new)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
