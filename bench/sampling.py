"""Single-stream sampling speed: the seed recipe against our NumPy sampler, in one run.

Measures, on this machine and in this order (TensorFlow is imported last, so its
idle thread pools cannot slow the NumPy measurements down):

1. ours: ``genmodels.sampler.Sampler`` on a 2x256 model (``models/shakespeare`` if it
   is one, else random weights of that shape: speed does not depend on the values),
   characters per second at temperature 0.8, and again with top-k 40 / top-p 0.95;
   first as shipped (BLAS threads "auto": every core the rest of the machine leaves
   idle, ``genmodels/blas_threads.py``), then fixed at one BLAS thread and at one per
   core;
2. a plain NumPy step: the textbook per-character LSTM (embedding row, ``x@W + h@U + b``,
   sigmoid/tanh per gate, two layers, dense, softmax, ``rng.choice``) on the same
   weights, to show what the optimised kernel in ``genmodels/kernel.py`` buys; and one
   block of Gumbel noise drawn by ``rng.gumbel`` against ``sampler.gumbel_block``;
3. cold start: wall time of ``python -m genmodels sample shakespeare --max-chars 300``
   (best and median of 5, interpreter start included), and whether that process
   imported TensorFlow (it must not);
4. the seed recipe: ``model.predict`` on a one-hot 60-character window per character
   (``bench/seed_recipe.py``; an untrained model, which is just as fast).

Prints readable lines, then one final JSON line with every figure, the targets and the
machine. Timings are measured, never asserted.

    python bench/sampling.py [--quick] [--model models/shakespeare]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make genmodels/, training/, bench/ importable

import numpy as np  # noqa: E402

import genmodels  # noqa: E402,F401  first: it sets the BLAS thread default before NumPy loads
from genmodels import artifact as artifacts  # noqa: E402
from genmodels.blas_threads import PERIOD_S  # noqa: E402
from genmodels.config import ModelConfig  # noqa: E402
from genmodels.sampler import Sampler, SamplingParams  # noqa: E402
from genmodels.styles import load_styles  # noqa: E402
from genmodels.vocab import Vocabulary  # noqa: E402
from training.corpus import scan  # noqa: E402

CORPUS = ROOT / "data" / "corpora" / "shakespeare.txt"
TARGETS = {"ours_chars_per_s_min": 10_000, "cold_start_s_max": 1.5,
           "seed_recipe_chars_per_s_reference": 14}
CLI = ["-m", "genmodels", "sample", "shakespeare", "--max-chars", "300"]
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def machine() -> dict:
    info = {}
    try:  # platform.processor() is often empty on Linux; /proc/cpuinfo names the CPU
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if not key.strip():
                break  # the first CPU's block is enough
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    # "AMD EPYC" alone names several generations: family and model tell Zen 3 from Zen 4.
    family = f"{info['cpu family']}/{info['model']}" if "cpu family" in info else ""
    return {"processor": platform.processor(), "cpu_model": info.get("model name", ""),
            "cpu_family_model": family, "avx512": "avx512f" in info.get("flags", "").split(),
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__,
            "blas_thread_env": {v: os.environ.get(v) for v in BLAS_THREAD_VARS},
            # Another job on the cores skews every figure: a load near cpu_count says so.
            "load_average_1min": round(os.getloadavg()[0], 2)}


def load_model(path: Path, vocab: Vocabulary) -> tuple[artifacts.Artifact, str]:
    """The shipped 2x256 artifact if there is one, else random weights of that shape."""
    if (path / artifacts.META_FILE).exists():
        art = artifacts.load(path)
        if (art.model_config.hidden, art.model_config.n_layers) == (256, 2):
            return art, "artifact"
        print(f"{path} is {art.model_config.n_layers}x{art.model_config.hidden}, "
              f"not 2x256: using random weights")
    cfg = ModelConfig(vocab_size=len(vocab))
    rng = np.random.default_rng(0)
    weights = {name: rng.normal(0.0, 0.1, shape).astype(np.float32)
               for name, shape in artifacts.weight_shapes(cfg).items()}
    return artifacts.Artifact(style="bench", vocab=vocab, model_config=cfg,
                              weights=weights, version="random-2x256"), "random"


def time_ours(sampler: Sampler, prime: str, params: SamplingParams, repeats: int) -> dict:
    """Chars/s of ``Sampler.generate`` (prime feeding included), best and median."""
    sampler.generate(prime, SamplingParams(stop="none", max_chars=50, seed=0))  # warm-up
    rates, n = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        n = len(sampler.generate(prime, params).text)
        rates.append(n / (time.perf_counter() - start))
    return {"chars": n, "repeats": repeats, "chars_per_s": round(statistics.median(rates)),
            "chars_per_s_best": round(max(rates))}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class PlainLSTM:
    """The textbook per-step NumPy LSTM: what one would write before optimising."""

    def __init__(self, weights: dict[str, np.ndarray], cfg: ModelConfig):
        self.w, self.cfg = weights, cfg
        self.h = [np.zeros(cfg.hidden, np.float32) for _ in range(cfg.n_layers)]
        self.c = [np.zeros(cfg.hidden, np.float32) for _ in range(cfg.n_layers)]

    def step(self, char_id: int) -> np.ndarray:
        w, hid = self.w, self.cfg.hidden
        x = w["embedding"][char_id]
        for n in range(self.cfg.n_layers):
            z = x @ w[f"lstm_{n}/kernel"] + self.h[n] @ w[f"lstm_{n}/recurrent_kernel"] \
                + w[f"lstm_{n}/bias"]
            i, f = _sigmoid(z[:hid]), _sigmoid(z[hid:2 * hid])
            g, o = np.tanh(z[2 * hid:3 * hid]), _sigmoid(z[3 * hid:])
            self.c[n] = f * self.c[n] + i * g
            self.h[n] = o * np.tanh(self.c[n])
            x = self.h[n]
        return x @ w["dense/kernel"] + w["dense/bias"]


def time_plain(art: artifacts.Artifact, prime_ids: list[int], n_chars: int,
               temperature: float = 0.8) -> dict:
    """Chars/s of the plain step with softmax + ``rng.choice``; also checks its logits."""
    plain, rng = PlainLSTM(art.weights, art.model_config), np.random.default_rng(1)
    for i in prime_ids[:-1]:
        plain.step(i)
    # Same model, same maths: the last prime step must match the optimised kernel.
    from genmodels.kernel import NumpyLSTM
    ref, _ = NumpyLSTM(art.weights, art.model_config).run([prime_ids])
    logits = plain.step(prime_ids[-1])
    diff = float(np.abs(logits - ref[0, -1]).max())
    vocab_size = len(logits)
    start = time.perf_counter()
    for _ in range(n_chars):
        z = logits / temperature
        p = np.exp(z - z.max())
        nxt = rng.choice(vocab_size, p=p / p.sum())
        logits = plain.step(nxt)
    secs = time.perf_counter() - start
    return {"chars": n_chars, "chars_per_s": round(n_chars / secs),
            "max_abs_logit_diff_vs_kernel": diff}


def time_noise(vocab_size: int, repeats: int = 50) -> dict:
    """One block of Gumbel noise (256 characters): ``rng.gumbel`` against ours."""
    from genmodels.sampler import NOISE_BLOCK, gumbel_block

    rng = np.random.default_rng(0)
    out = {}
    for name, draw in (("rng_gumbel_ms", lambda: rng.gumbel(size=(NOISE_BLOCK, vocab_size))
                        .astype(np.float32)),
                       ("gumbel_block_ms", lambda: gumbel_block(rng, vocab_size))):
        start = time.perf_counter()
        for _ in range(repeats):
            draw()
        out[name] = round((time.perf_counter() - start) / repeats * 1e3, 3)
    return out


def _child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def time_cold_start(runs: int = 5) -> dict | None:
    """Wall time of the sampling CLI in a fresh interpreter; None without the model."""
    model_dir = load_styles().get("shakespeare").model_dir  # where the CLI will look
    if not (model_dir / artifacts.META_FILE).exists():
        return None
    walls = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, *CLI], cwd=ROOT, env=_child_env(),
                              capture_output=True, text=True)
        walls.append(time.perf_counter() - start)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip()[-500:], "returncode": proc.returncode}
    return {"command": "python " + " ".join(CLI), "model_dir": str(model_dir), "runs": runs,
            "best_s": round(min(walls), 3), "median_s": round(statistics.median(walls), 3),
            "imports": cli_imports()}


def cli_imports() -> dict:
    """Which heavy modules a process holds after sampling through the CLI's main()."""
    code = ("import contextlib, io, json, sys\n"
            "from genmodels.__main__ import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    rc = main({CLI[2:]!r})\n"
            "print(json.dumps({'returncode': rc, 'tensorflow': 'tensorflow' in sys.modules,"
            " 'keras': 'keras' in sys.modules}))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_child_env(),
                          capture_output=True, text=True)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": proc.stderr.strip()[-500:]}


def time_seed(vocab: Vocabulary, prime_ids: list[int], n_chars: int) -> dict:
    """Chars/s of the seed recipe's sampling loop, after one warm-up ``predict``."""
    from bench import seed_recipe

    model = seed_recipe.build_model(len(vocab))
    seed_recipe.generate(model, vocab.chars, prime_ids, 1)  # traces predict once
    text, secs = seed_recipe.generate(model, vocab.chars, prime_ids, n_chars)
    return {"chars": len(text), "seconds": round(secs, 3),
            "chars_per_s": round(len(text) / secs, 2), "model": "untrained LSTM(128)"}


def warm_up(sampler: Sampler, prime: str) -> None:
    """Sample for 2.5 policy periods: the "auto" BLAS thread count is decided by a look
    at the machine once a period (genmodels/blas_threads.py), so it has settled."""
    params, until = SamplingParams(stop="none", max_chars=300, seed=0), \
        time.perf_counter() + 2.5 * PERIOD_S
    while time.perf_counter() < until:
        sampler.generate(prime, params)


def bench_ours(art: artifacts.Artifact, prime: str, n_chars: int, repeats: int,
               blas: str | int = "auto") -> dict:
    """Our sampler at temperature 0.8, then with top-k 40 and top-p 0.95 as well, after
    a warm-up; ``blas``: the sampler's BLAS thread setting (genmodels/blas_threads.py)."""
    sampler, out = Sampler(art, blas=blas), {}
    warm_up(sampler, prime)
    label = "default, BLAS threads auto" if blas == "auto" else f"{blas} BLAS thread(s)"
    for name, extra in (("t0.8", {}), ("t0.8_top_k40_top_p0.95", {"top_k": 40, "top_p": 0.95})):
        params = SamplingParams(stop="none", max_chars=n_chars, seed=1, temperature=0.8,
                                **extra)
        r = out[name] = time_ours(sampler, prime, params, repeats)
        r["blas_threads"] = sampler.blas.current
        print(f"ours ({name}, {label}): {r['chars_per_s']:,} chars/s median, "
              f"{r['chars_per_s_best']:,} best ({r['chars']:,} chars x {r['repeats']}, "
              f"{r['blas_threads']} BLAS threads)")
    return out


def setup(model: Path) -> tuple[str, artifacts.Artifact, str]:
    """The 60-char prime (the corpus's first line or so) and the model to time."""
    vocab = Vocabulary(scan(CORPUS)[2])
    prime = CORPUS.read_text(encoding="utf-8")[:60]
    return (prime, *load_model(model, vocab))


def summary(args, art, source: str, timings: dict, mach: dict) -> dict:
    """Everything in one dict: the final JSON line."""
    cfg, ours = art.model_config, timings["ours"]["t0.8"]["chars_per_s"]
    return {
        "bench": "sampling", "quick": args.quick,
        "model": {"source": source, "version": art.version, "vocab_size": len(art.vocab),
                  "hidden": cfg.hidden, "n_layers": cfg.n_layers, "n_params": cfg.n_params()},
        **timings,
        "speedup_vs_seed": round(ours / timings["seed_recipe"]["chars_per_s"], 1),
        "speedup_vs_plain_numpy": round(ours / timings["plain_numpy_step"]["chars_per_s"], 2),
        "targets": TARGETS, "machine": mach}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    p.add_argument("--model", type=Path, default=ROOT / "models" / "shakespeare",
                   help="2x256 artifact to time (random weights if absent)")
    args = p.parse_args(argv)
    mach = machine()  # before we load the cores ourselves
    n_ours, n_plain, n_seed, repeats = ((2_000, 300, 10, 1) if args.quick
                                        else (20_000, 3_000, 40, 3))
    prime, art, source = setup(args.model)
    cfg, prime_ids = art.model_config, art.vocab.encode(prime).ids
    print(f"model: {source} {art.version} ({cfg.n_layers}x{cfg.hidden}, "
          f"vocab {len(art.vocab)}, {cfg.n_params():,} params)")
    t = {"ours": bench_ours(art, prime, n_ours, repeats),
         "ours_one_blas_thread": bench_ours(art, prime, n_ours, repeats, blas=1),
         "ours_all_blas_threads": bench_ours(art, prime, n_ours, repeats,
                                             blas=os.cpu_count() or 1),
         "plain_numpy_step": time_plain(art, prime_ids, n_plain)}
    print(f"plain NumPy step: {t['plain_numpy_step']['chars_per_s']:,} chars/s; logits match "
          f"the kernel to {t['plain_numpy_step']['max_abs_logit_diff_vs_kernel']:.1e}")
    t["noise_block"] = time_noise(len(art.vocab))
    print(f"Gumbel noise for 256 characters: rng.gumbel {t['noise_block']['rng_gumbel_ms']} ms,"
          f" sampler.gumbel_block {t['noise_block']['gumbel_block_ms']} ms")
    t["cold_start"] = time_cold_start(2 if args.quick else 5)
    print("cold start: no models/shakespeare, skipped" if t["cold_start"] is None else
          f"cold start: {json.dumps(t['cold_start'])}")
    t["seed_recipe"] = seed = time_seed(art.vocab, prime_ids, n_seed)
    print(f"seed recipe: {seed['chars_per_s']:,} chars/s ({seed['chars']} chars in "
          f"{seed['seconds']} s)")
    result = summary(args, art, source, t, mach)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
