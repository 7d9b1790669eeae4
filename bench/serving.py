"""Serving throughput and latency: the batching engine in-process and over HTTP, in one run.

Measures, in this order (TensorFlow last, so its thread pools cannot slow the rest):

1. in-process: ``serving.engine.EngineClient`` at concurrency 1, 8, 64 and 256
   (closed loop: each of C workers sends its next request when the last one returns);
   every request is 300 characters (stop rule off) after the corpus's first 60 chars;
2. HTTP: ``python -m serving`` started as a child holding *every* shipped
   model (``models/*``), driven through ``serving.http_client.HttpClient`` at the same
   concurrencies; then the child's RSS (current and peak) and whether it loaded
   TensorFlow (its /proc/PID/maps);
3. the single-stream sampler (``Sampler.generate``, 300 characters, one stream);
4. the seed recipe: ``model.predict`` over a one-hot 60-character window per character
   (``bench/seed_recipe.py``).

Aggregate = characters received / wall time of the level; latency = request sent ->
text received. Each sweep starts with a warm-up of a few seconds, so the engine's BLAS
thread policy (``genmodels/blas_threads.py``) has decided; every level reports the
thread count the engine used. Prints readable lines, writes ``docs/serving_latency.png`` and prints
one final JSON line. Timings are measured, never asserted.

    python bench/serving.py [--quick] [--model models/austen] [--no-plot]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402

import genmodels  # noqa: E402,F401  first: the BLAS thread default
from bench.sampling import machine, warm_up  # noqa: E402
from genmodels import artifact as artifacts  # noqa: E402
from genmodels.blas_threads import PERIOD_S  # noqa: E402
from genmodels.sampler import Sampler, SamplingParams  # noqa: E402
from serving.engine import Engine, EngineClient  # noqa: E402
from serving.http_client import HttpClient  # noqa: E402

CHARS = 300
LEVELS = (1, 8, 64, 256)
TARGETS = {"c64_chars_per_s_min": 40_000, "c64_vs_seed_recipe_min": 2_000,
           "c64_p99_s_max": 1.5, "c1_p50_ms_max": 40, "service_rss_mb_max": 400}
PLOT = ROOT / "docs" / "serving_latency.png"


def requests_for(level: int, quick: bool) -> int:
    """Requests per level: two rounds (at least 16) for a p99, one round at 256."""
    if quick:
        return max(level, 4)
    return level if level >= 256 else max(2 * level, 16)


async def run_level(generate, level: int, n: int) -> dict:
    """``n`` requests through ``generate(seed)`` with ``level`` in flight."""
    latencies, chars, next_seed = [], 0, iter(range(n))

    async def worker():
        nonlocal chars
        for seed in next_seed:
            start = time.perf_counter()
            result = await generate(seed)
            latencies.append(time.perf_counter() - start)
            chars += len(result.sample.text)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(level)))
    wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {"concurrency": level, "requests": n, "chars": chars, "wall_s": round(wall, 3),
            "chars_per_s": round(chars / wall), "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1),
            "max_ms": round(float(lat.max()), 1)}


async def sweep(client, style: str, prime: str, quick: bool, label: str,
                blas_threads) -> list[dict]:
    """Every level; ``blas_threads()`` says how many BLAS threads the engine used."""
    async def generate(seed):
        return await client.generate(style, prime, SamplingParams(
            seed=seed, max_chars=CHARS, stop="none", temperature=0.8))

    # Warm-up: first allocations and connections, and long enough for the engine's BLAS
    # thread policy (genmodels/blas_threads.py, one look a second) to have decided.
    warm_until = time.perf_counter() + 2.5 * PERIOD_S
    while time.perf_counter() < warm_until:
        await run_level(generate, 2, 2)
    out = []
    for level in LEVELS:
        r = await run_level(generate, level, requests_for(level, quick))
        r["blas_threads"] = await blas_threads()
        print(f"{label} c={level:<3} {r['chars_per_s']:>7,} chars/s  p50 {r['p50_ms']:>8,.1f} ms"
              f"  p99 {r['p99_ms']:>8,.1f} ms  ({r['requests']} requests, "
              f"{r['blas_threads']} BLAS threads)", flush=True)
        out.append(r)
    return out


def bench_in_process(model: Path, style: str, prime: str, quick: bool) -> list[dict]:
    async def go():
        client = EngineClient(Engine(paths={style: model}, backend="numpy"))
        try:
            async def threads():
                return client.engine.blas.current
            return await sweep(client, style, prime, quick, "in-process", threads)
        finally:
            await client.close()
    return asyncio.run(go())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mb": fields.get("VmRSS"), "peak_rss_mb": fields.get("VmHWM")}


async def _metric(url: str, name: str) -> int | None:
    """One unlabelled value from the service's /metrics."""
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(f"stylebot_inference_{name} "):
                return int(float(line.split()[1]))
    return None


def _wait_healthy(url: str, proc: subprocess.Popen, log, timeout: float = 120) -> dict:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"the service exited: {log.read()[-500:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the service did not answer /healthz in time")


def bench_http(style: str, prime: str, quick: bool) -> tuple[list[dict], dict]:
    """The service as a child (every shipped model loaded): sweep, then its memory."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(ROOT), INFERENCE_SECRET="")
    # The service logs a line per request: to a file, since an unread pipe would fill up
    # and block it.
    log = tempfile.NamedTemporaryFile("w+", prefix="serving-", suffix=".log")
    proc = subprocess.Popen([sys.executable, "-m", "serving", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        health = _wait_healthy(url, proc, log)  # 200: every configured style ready
        loaded = [name for name, h in health["styles"].items() if h["ready"]]
        idle = _rss_mb(proc.pid)
        print(f"service: {len(loaded)} models loaded, RSS {idle['rss_mb']} MB", flush=True)

        async def go():
            client = HttpClient(url, timeout_s=600)
            try:
                return await sweep(client, style, prime, quick, "http      ",
                                   lambda: _metric(url, "blas_threads"))
            finally:
                await client.close()
        levels = asyncio.run(go())
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        memory = {"models_loaded": sorted(loaded), "idle": idle, "after_load": _rss_mb(proc.pid),
                  "tensorflow_loaded": "tensorflow" in maps}
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    print(f"service memory: {json.dumps(memory['after_load'])}, TensorFlow loaded: "
          f"{memory['tensorflow_loaded']}", flush=True)
    return levels, memory


def bench_single(art, prime: str, repeats: int) -> dict:
    sampler = Sampler(art)
    warm_up(sampler, prime)  # its BLAS thread policy decides first
    walls = []
    for seed in range(repeats):
        start = time.perf_counter()
        sampler.generate(prime, SamplingParams(seed=seed, max_chars=CHARS, stop="none"))
        walls.append(time.perf_counter() - start)
    wall = float(np.median(walls))
    return {"chars": CHARS, "repeats": repeats, "blas_threads": sampler.blas.current,
            "median_ms": round(wall * 1000, 1),
            "chars_per_s": round(CHARS / wall)}


def bench_seed(art, prime: str, n_chars: int) -> dict:
    from bench import seed_recipe

    ids = art.vocab.encode(prime).ids
    model = seed_recipe.build_model(len(art.vocab))
    seed_recipe.generate(model, art.vocab.chars, ids, 1)  # traces predict once
    text, secs = seed_recipe.generate(model, art.vocab.chars, ids, n_chars)
    return {"chars": len(text), "seconds": round(secs, 3),
            "chars_per_s": round(len(text) / secs, 2), "model": "untrained LSTM(128)"}


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("in_process", "in-process"), ("http", "HTTP")):
        levels = result[key]
        x = [r["concurrency"] for r in levels]
        ax.plot(x, [r["p50_ms"] for r in levels], "o-", label=f"{label} p50")
        ax.plot(x, [r["p99_ms"] for r in levels], "s--", label=f"{label} p99")
        ax2.plot(x, [r["chars_per_s"] for r in levels], "o-", label=label)
    ax2.axhline(result["seed_recipe"]["chars_per_s"], color="grey", ls=":", label="seed recipe")
    ax2.axhline(result["single_stream"]["chars_per_s"], color="black", ls="-.",
                label="single-stream sampler")
    for a, title, unit in ((ax, "latency of a 300-char request", "ms"),
                           (ax2, "aggregate throughput", "chars/s")):
        a.set_xscale("log", base=2)
        a.set_yscale("log")
        a.set_xlabel("concurrent requests")
        a.set_ylabel(unit)
        a.set_title(title)
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle(f"{result['model']['version']} (2x{result['model']['hidden']}), "
                 f"load {result['machine']['load_average_1min']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def verdict(result: dict) -> dict:
    c64 = next(r for r in result["in_process"] if r["concurrency"] == 64)
    c1 = next(r for r in result["in_process"] if r["concurrency"] == 1)
    ratio = c64["chars_per_s"] / result["seed_recipe"]["chars_per_s"]
    return {"c64_chars_per_s": c64["chars_per_s"], "c64_vs_seed_recipe": round(ratio),
            "c64_p99_s": round(c64["p99_ms"] / 1000, 3), "c1_p50_ms": c1["p50_ms"],
            "service_rss_mb": result["service_memory"]["after_load"]["rss_mb"],
            "met": {"c64_chars_per_s": c64["chars_per_s"] >= TARGETS["c64_chars_per_s_min"],
                    "c64_vs_seed_recipe": ratio >= TARGETS["c64_vs_seed_recipe_min"],
                    "c64_p99": c64["p99_ms"] / 1000 <= TARGETS["c64_p99_s_max"],
                    "c1_p50": c1["p50_ms"] <= TARGETS["c1_p50_ms_max"],
                    "service_rss": result["service_memory"]["after_load"]["rss_mb"]
                    <= TARGETS["service_rss_mb_max"],
                    "no_tensorflow": not result["service_memory"]["tensorflow_loaded"]}}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer requests: a smoke test")
    p.add_argument("--model", type=Path, default=ROOT / "models" / "austen",
                   help="2x256 artifact folder (its style name is served over HTTP too)")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    mach = machine()
    art = artifacts.load(args.model)
    style = art.style
    prime = (ROOT / "data" / "corpora" / f"{style}.txt").read_text(encoding="utf-8")[:60]
    cfg = art.model_config
    print(f"model {art.version} ({cfg.n_layers}x{cfg.hidden}, vocab {cfg.vocab_size}); "
          f"{CHARS}-char requests; load {mach['load_average_1min']}", flush=True)
    result = {"bench": "serving", "quick": args.quick, "chars_per_request": CHARS,
              "model": {"version": art.version, "hidden": cfg.hidden, "n_layers": cfg.n_layers,
                        "vocab_size": cfg.vocab_size},
              "in_process": bench_in_process(args.model, style, prime, args.quick)}
    result["http"], result["service_memory"] = bench_http(style, prime, args.quick)
    result["single_stream"] = bench_single(art, prime, 3 if args.quick else 5)
    single = result["single_stream"]
    print(f"single-stream sampler: {single['chars_per_s']:,} chars/s "
          f"({single['blas_threads']} BLAS threads)", flush=True)
    result["seed_recipe"] = bench_seed(art, prime, 10 if args.quick else 30)
    print(f"seed recipe: {result['seed_recipe']['chars_per_s']} chars/s", flush=True)
    result["machine"] = mach | {"load_average_1min_end": round(os.getloadavg()[0], 2)}
    result["targets"], result["verdict"] = TARGETS, verdict(result)
    if not args.no_plot:
        plot(result, PLOT)
        result["plot"] = str(PLOT.relative_to(ROOT))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
